"""`dockyard server` without the runner, for bench/enqueue.py.

The same `Controller`, FastAPI app and uvicorn as `python -m dockyard server`
(dockyard/cli/commands_server.py), with `Settings(start_loops=False)` and only the scheduler
started by hand: the runner loop (and the 5 s reconcile sweep, which pushes do not need)
never runs, so triggered runs stay `pending` and nothing claims them or builds environments
while enqueueing is measured. Pushes are reconciled at the end of receive-pack as usual.

Usage: python bench/_server_no_runner.py --data-dir DIR --port PORT
"""

import argparse
import sys

import uvicorn

from dockyard.controller.assembly import Controller
from dockyard.logsetup import configure
from dockyard.settings import Settings
from dockyard.web.asgi import create_asgi


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    configure("info")
    settings = Settings.from_env(data_dir=args.data_dir, port=args.port, start_loops=False)
    ctl = Controller(settings)
    ctl.bootstrap()
    ctl.scheduler.start()
    print("bench server: runner not started", file=sys.stderr, flush=True)
    uvicorn.run(
        create_asgi(settings, ctl), host=settings.host, port=settings.port, access_log=False
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
