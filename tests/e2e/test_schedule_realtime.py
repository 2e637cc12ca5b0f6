"""A real server, real time: a cron job fires at the minute and its follow-up runs after it."""

from pathlib import Path

from tests.conftest import WORKSPACES, Cli, copy_workspace, make_server, wait_run


def test_a_cron_job_fires_on_the_minute_and_its_follow_up_runs(
    cache_home: Path, tmp_path: Path
) -> None:
    server = make_server(tmp_path).start()
    cli = Cli(server, cache_home, tmp_path / "config", "realtime")
    try:
        ws = copy_workspace(WORKSPACES / "scheduled", tmp_path / "scheduled")
        cli.run("deploy", cwd=ws)
        info = cli.json("job", "minutely", "info")
        assert len(info["next_runs"]) == 5
        first = info["next_runs"][0]
        assert first.endswith(":00+00:00")  # on the minute
        run = wait_run(cli, "minutely", 1, timeout=150)
        assert run["status"] == "completed", cli.run("logs", "minutely").stdout
        assert run["scheduled_for"] == first and run["trigger"] == "schedule:* * * * *"
        assert run["interval_end"] == first
        assert f"tick schedule:* * * * * {first}" in cli.run("logs", "minutely", "1").stdout
        # the next tick's run was started ahead of it (dlt imported, waiting) and released
        # at the tick (the environment exists by then)
        second = wait_run(cli, "minutely", 2, timeout=150)
        assert second["status"] == "completed"
        assert (
            "released the prepared process at its tick" in cli.run("logs", "minutely", "2").stdout
        )
        follow = wait_run(cli, "after_minutely", 1, timeout=60)
        assert follow["status"] == "completed"
        assert follow["trigger"] == "job.success:jobs.__deployment__.minutely"
        assert (
            "followed job.success:jobs.__deployment__.minutely"
            in cli.run("logs", "after_minutely", "1").stdout
        )
    finally:
        server.stop()
