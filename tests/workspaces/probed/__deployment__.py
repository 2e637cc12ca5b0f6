"""A workspace that tells where its manifest was built: its job's description says whether
the module was imported in a container (Docker's `/.dockerenv`) or on the host."""

import os

from dlt.hub import run

WHERE = "container" if os.path.exists("/.dockerenv") else "host"


def probe():
    print(f"probe; imported in a {WHERE}")


probe.__doc__ = f"imported in a {WHERE}"
probe = run.job(probe)

__all__ = ["probe"]
