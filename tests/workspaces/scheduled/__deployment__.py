"""Scheduled test workspace: a job every minute, and a follow-up of it."""

from dlt.hub import run


@run.job(trigger="* * * * *")
def minutely(run_context):
    print(f"tick {run_context['trigger']} {run_context['interval_end'].isoformat()}")


@run.job(trigger=minutely.success)
def after_minutely(run_context):
    print(f"followed {run_context['trigger']}")


__all__ = ["after_minutely", "minutely"]
