"""Crash test workspace: a job that fires once (at the time in FIRE_AT) and its follow-up."""

import time

from dlt.hub import run

FIRE_AT = "2026-01-01T00:00:00+00:00"  # the crash tests write the real time here


@run.job(trigger=f"once:{FIRE_AT}")
def once_job():
    print("once ran", flush=True)
    time.sleep(3)


@run.job(trigger=once_job.success)
def follow():
    print("follow ran", flush=True)


__all__ = ["follow", "once_job"]
