"""A workspace whose jobs need different machines: placement sends each to the right worker."""

from dlt.hub import run


@run.job(require={"instance": {"size": "large"}})
def crunch():
    """Needs a large machine."""
    print("crunching on a large machine")


@run.job
def plain():
    """Runs anywhere."""
    print("plain job")


@run.job(require={"region": "mars-1"})
def far_away():
    """Needs a region nobody serves."""
    print("never runs")


__all__ = ["crunch", "far_away", "plain"]
