"""Offline weather workspace: fake readings into DuckDB, a follow-up report, a heartbeat."""

# Jobs (all in config section `weather`, so their refs are `jobs.weather.<name>`):
#   ingest_weather  @run.pipeline job, manual; loads deterministic rows into DuckDB and
#                   declares a structured result with run.result(...)
#   weather_report  follow-up, runs after ingest_weather succeeds; needs the `reports`
#                   dependency group (tabulate)
#   heartbeat       cron schedule, every 30 minutes; prints one line
#   show_config     manual; prints the config values it received and the active profile
# Nothing runs at import time: generating the manifest only imports this module.

from typing import List

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.hub import run

from weather_source import (
    DATASET_NAME,
    PIPELINE_NAME,
    active_profile,
    weather_pipeline,
    weather_source,
)

SECTION = "weather"


@run.pipeline(
    PIPELINE_NAME,
    section=SECTION,
    expose={"tags": ["ingest"], "display_name": "Ingest weather"},
    execute={"timeout": "5m"},
)
def ingest_weather(cities: List[str] = dlt.config.value, days: int = dlt.config.value):
    """Loads one deterministic reading per city and day into the local DuckDB dataset."""
    pipeline = weather_pipeline()
    load_info = pipeline.run(weather_source(cities=cities, days=days))
    load_info.raise_on_failed_jobs()
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("observations", 0)
    print(f"loaded {rows} rows for {len(cities)} cities x {days} days into {DATASET_NAME}")
    run.result(
        {
            "pipeline_name": PIPELINE_NAME,
            "dataset_name": DATASET_NAME,
            "table": "observations",
            "rows": rows,
            "cities": list(cities),
            "days": days,
            "load_id": load_info.loads_ids[-1] if load_info.loads_ids else None,
            "profile": active_profile(),
        },
        type="weather_ingest_summary",
    )


@run.job(
    section=SECTION,
    trigger=ingest_weather.success,
    expose={"tags": ["transform"], "display_name": "Weather report"},
    require={"dependency_groups": ["reports"]},
    execute={"timeout": "5m"},
)
def weather_report(top_n: int = 3):
    """Summarises the loaded readings per city and prints them as a table."""
    # imported here, not at module level: the `reports` group is installed only for this job,
    # and manifest generation (which imports this module) must work without it
    from tabulate import tabulate

    # plain SQL through the destination's client; `pipeline.dataset()` relations would work too,
    # but in dlt 1.31.0 they break with sqlglot >= 30.22 (qualify() lost `infer_schema`)
    pipeline = weather_pipeline()
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name("observations")
            rows = client.execute_sql(
                "SELECT city, COUNT(*) AS days, ROUND(AVG(temp_c), 2) AS avg_temp_c,"
                " MIN(temp_c) AS min_temp_c, MAX(temp_c) AS max_temp_c,"
                f" ROUND(SUM(rain_mm), 1) AS rain_mm FROM {table}"
                " GROUP BY city ORDER BY avg_temp_c DESC, city"
            )
    except DatabaseUndefinedRelation:
        rows = []
    if not rows:
        print(f"no weather data in {DATASET_NAME} yet: run jobs.weather.ingest_weather first")
        return
    headers = ["city", "days", "avg °C", "min °C", "max °C", "rain mm"]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    warmest = [r[0] for r in rows[:top_n]]
    print(f"warmest {len(warmest)}: {', '.join(warmest)}")
    run.result({"cities": len(rows), "warmest": warmest}, type="weather_report")


@run.job(
    section=SECTION,
    trigger=run.trigger.schedule("*/30 * * * *"),
    expose={"tags": ["maintenance"]},
    execute={"timeout": "1m"},
)
def heartbeat(run_context: run.TJobRunContext):
    """Prints one line with the run id, the trigger and the scheduled window."""
    start = run_context.get("interval_start")
    end = run_context.get("interval_end")
    window = f"{start.isoformat()} .. {end.isoformat()}" if start and end else "none"
    print(
        f"heartbeat ok: run_id={run_context['run_id']} trigger={run_context['trigger']}"
        f" window={window}"
    )


@run.job(section=SECTION, expose={"tags": ["config"]}, execute={"timeout": "1m"})
def show_config(
    cities: List[str] = dlt.config.value,
    days: int = dlt.config.value,
    profile_note: str = dlt.config.value,
):
    """Prints the configuration the job received and the active workspace profile."""
    print(f"profile: {active_profile()}")
    print(f"profile_note: {profile_note}")
    print(f"cities: {', '.join(cities)}")
    print(f"days: {days}")


__all__ = ["ingest_weather", "weather_report", "heartbeat", "show_config"]
__tags__ = ["example", "offline", "duckdb"]
