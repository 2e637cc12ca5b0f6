"""What a person sees of schedules: `deploy --dry-run` changes and `job … info`."""

from pathlib import Path

from tests.conftest import Cli

NIGHTLY = """

@run.job(trigger="{cron}", interval={{"start": "2026-01-01T00:00:00+00:00"}},
         require={{"timezone": "Europe/Berlin"}})
def nightly():
    pass


__all__ = __all__ + ["nightly"]
"""


def add_nightly(ws: Path, cron: str) -> None:
    source = ws / "__deployment__.py"
    text = source.read_text().split('\n\n@run.job(trigger="')[0]
    source.write_text(text + NIGHTLY.format(cron=cron))


def test_dry_run_and_job_info_show_the_schedule(cli: Cli, basic_ws: Path) -> None:
    add_nightly(basic_ws, "0 3 * * *")
    dry = cli.json("deploy", "--dry-run", cwd=basic_ws)
    (change,) = dry["schedules"]
    assert change["job_ref"] == "jobs.__deployment__.nightly"
    assert change["old_triggers"] == [] and change["new_triggers"] == ["schedule:0 3 * * *"]
    next_fire = change["next_fire_at"]["schedule:0 3 * * *"]
    assert next_fire[11:16] in ("01:00", "02:00")  # 03:00 in Berlin, CET or CEST
    start, _end = change["next_window"]
    assert start == "2025-12-31T02:00:00+00:00"  # interval.start snapped back to a Berlin 03:00
    cli.run("deploy", cwd=basic_ws)

    info = cli.json("job", "nightly", "info")
    assert info["next_runs"][0] == next_fire and len(info["next_runs"]) == 5
    assert info["next_runs_local"][0][11:19] == "03:00:00"
    assert info["timezone"] == "Europe/Berlin" and info["concurrency"] == 1
    assert info["interval"]["completed_up_to"] is None
    assert info["interval"]["next_window"][0] == start
    text = cli.run("job", "nightly", "info").stdout
    assert "next runs (UTC / job's timezone)" in text and "next run covers" in text

    add_nightly(basic_ws, "30 4 * * *")
    shown = cli.run("deploy", "--dry-run", cwd=basic_ws).stdout
    assert (
        "schedule  jobs.__deployment__.nightly: schedule:0 3 * * * -> schedule:30 4 * * *" in shown
    )


def test_pause_and_resume_from_the_cli(cli: Cli, basic_ws: Path) -> None:
    add_nightly(basic_ws, "0 3 * * *")
    cli.run("deploy", cwd=basic_ws)
    paused = cli.json("job", "nightly", "pause")
    assert paused["paused_at"] is not None and paused["paused_by"]
    assert "timed triggers paused since" in cli.run("job", "nightly", "pause").stdout
    listed = {j["job_ref"]: j for j in cli.json("job", "list")}
    assert listed["jobs.__deployment__.nightly"]["paused_at"] == paused["paused_at"]
    cli.run("deploy", cwd=basic_ws)  # a redeploy keeps the pause
    assert cli.json("job", "nightly", "info")["paused_at"] == paused["paused_at"]
    resumed = cli.json("job", "nightly", "resume")
    assert resumed["paused_at"] is None and resumed["next_fire_at"] is not None
    assert "timed triggers active" in cli.run("job", "nightly", "resume").stdout
    assert "usage: dockyard job [NAME|SELECTOR…] list" in cli.fails("job", "nightly", "stop")
