"""Audited test workspace: a job every minute (the scheduler's and a person's runs of one
job), and a long job to cancel."""

import time

from dlt.hub import run


@run.job(trigger="* * * * *")
def minutely(run_context):
    print(f"tick {run_context['trigger']}")


@run.job
def napper():
    for i in range(6000):
        print(f"nap {i}", flush=True)
        time.sleep(0.1)


__all__ = ["minutely", "napper"]
