"""A FastAPI app with nothing but `/healthz`, served by uvicorn the way `dockyard server`
serves its app: the idle cost of the web server alone, for bench/scheduler_idle.py.

Usage: python bench/_server_bare.py --data-dir DIR --port PORT   (DIR is not used)
"""

import argparse
import sys

import uvicorn
from fastapi import FastAPI


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
