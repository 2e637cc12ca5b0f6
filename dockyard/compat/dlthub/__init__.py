"""The API the stock `dlthub` CLI (dlthub-client 0.28.x, dlt 1.31) calls, served from
dockyard's workspaces, jobs, runs and logs (docs/dlthub-cli.md).

- `ids`: pure: the UUIDs the client insists on, derived from dockyard's own identities, and
  the status and skip-reason mappings;
- `shapes`: pure: dockyard rows in the client's response models;
- `service`: the reads and actions, through the use cases dockyard's own API calls;
- `logstream`: a run's log as NDJSON (stored) and as server-sent events (live);
- `app`: `create_app`, the FastAPI application the web app mounts at `/dlthub`.
"""
