"""Alerts test workspace: a job that fails, one that fails only its first time, one that
always completes and one that runs past its timeout."""

import os
import time
from pathlib import Path

from dlt.hub import run


@run.job
def broken():
    raise RuntimeError("boom for the alerts")


@run.job
def flaky():
    """Fails its first run, completes every later one (a marker in its kept data folder)."""
    marker = Path(os.environ["DLT_DATA_DIR"]) / "flaky-ran-once"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("1")
        raise RuntimeError("flaky fails the first time")
    print("flaky completed")


@run.job
def fine():
    print("fine")


@run.job(execute={"timeout": {"timeout": 2, "grace_period": 1}})
def slow():
    print("sleeping past my timeout", flush=True)
    time.sleep(120)


__all__ = ["broken", "flaky", "fine", "slow"]
