"""The control plane: planning and scheduling (pure), loops, store, executors, git store.

It reads manifests (YAML) and never imports workspace code.
"""
