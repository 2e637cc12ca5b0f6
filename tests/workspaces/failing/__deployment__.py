"""A workspace whose jobs fail the way new users' do: a module the environment lacks,
imported from a submodule once the job runs; and a job that stays busy (its second launch
is skipped)."""

import time

from dlt.hub import run


@run.job
def transform():
    from usgs import transformations

    print(transformations.daily([{"site": 1}]))


@run.job
def busy():
    print("busy for a while", flush=True)
    time.sleep(120)


__all__ = ["transform", "busy"]
