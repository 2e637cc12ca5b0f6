"""Timed triggers: when they fire, what a fire records, and the loop that fires them.

- `rules`: pure — when a trigger is due (one fire for any number of missed ticks), which
  window a run covers, freshness and concurrency gates. Time is a parameter.
- `state`: the scheduling state in the database — one `schedule` row per timed trigger of a
  job (its next fire time), kept across redeploys; pause and resume.
- `loop`: the `Scheduler` thread — sleeps until the earliest due trigger and fires it exactly
  once, creating the run through `controller/lifecycle`.
"""
