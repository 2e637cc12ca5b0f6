"""`dockyard worker`: an agent that runs batch runs on another host, pulled from the server
over HTTP with a worker token — never database credentials (it must not import the store:
pyproject's import-linter contracts say so).

- `client`: the server's worker API (`/api/v1/worker/*`), retried on transport errors.
- `state`: what the agent keeps per run in its data dir (run, epoch, shipped log offset), and
  the pure log-shipping bookkeeping.
- `code`: the workspace repository mirrored over git smart HTTP, checked out once per SHA.
- `agent`: register, heartbeat, claim, prepare and start with the local or Docker executor,
  ship logs, report exits, obey the heartbeat's stop and given-up lists, adopt after a restart.
"""
