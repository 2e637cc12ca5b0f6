"""The `dockyard` command: parse, call the server (or the local workspace), render."""
