"""Resilience test workspace: a ~20 s job that prints lines, a quick one, a minutely tick."""

import time

from dlt.hub import run


@run.job(execute={"timeout": {"timeout": 600, "grace_period": 2}})
def steady():
    for i in range(200):
        print(f"line {i}", flush=True)
        time.sleep(0.1)
    print("steady done", flush=True)


@run.job
def quick():
    print("quick done")


@run.job(trigger="* * * * *")
def minutely(run_context):
    print(f"tick {run_context['interval_end'].isoformat()}")


__all__ = ["minutely", "quick", "steady"]
