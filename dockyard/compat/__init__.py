"""Compatibility APIs: other runtimes' clients served from dockyard's own use cases.

Below `cli | web` (the web app mounts them), above the controller they call: nothing here
re-implements a run's life, a trigger or a log read, it only speaks another client's shapes.
"""
