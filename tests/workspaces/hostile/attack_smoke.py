"""A harmless job, so the hostile workspace deploys even before an area adds its attacks."""

from dlt.hub import run


@run.job
def innocent() -> None:
    print("PROBE innocent ran", flush=True)


__all__ = ["innocent"]
