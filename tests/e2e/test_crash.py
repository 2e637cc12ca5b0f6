"""SIGKILL the controller at each named point, restart it, and count: exactly one run per
tick, no lost follow-up, no second process for the same run."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dockyard.crashpoints import POINTS
from tests.conftest import WORKSPACES, Cli, copy_workspace, make_server, wait_run


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_at_any_point_loses_and_repeats_nothing(
    point: str, cache_home: Path, tmp_path: Path
) -> None:
    ws = copy_workspace(WORKSPACES / "crashy", tmp_path / "crashy")
    source = ws / "__deployment__.py"
    template = source.read_text()

    def fire_at(at: datetime) -> None:
        source.write_text(template.replace("2026-01-01T00:00:00+00:00", at.isoformat()))

    server = make_server(tmp_path, DOCKYARD_CRASH_AT=point).start()
    cli = Cli(server, cache_home, tmp_path / "config", "crashy")
    try:
        # the first deploy builds what the import check needs (slow on a busy machine); the
        # second only moves the tick close, so the deploy is done when the controller dies
        fire_at(datetime(2030, 1, 1, tzinfo=UTC))
        cli.run("deploy", cwd=ws)
        fire_at((datetime.now(UTC) + timedelta(seconds=15)).replace(microsecond=0))
        cli.run("deploy", cwd=ws)
        assert server.proc is not None
        server.proc.wait(timeout=180)  # it kills itself at the point
        assert server.proc.returncode == -9, server.log.read_text()[-3000:]
        server.proc = None
        time.sleep(4)  # a process that survived the crash runs to its end meanwhile

        server.extra_env.pop("DOCKYARD_CRASH_AT")
        server.start()
        follow = wait_run(cli, "follow", 1, timeout=180)
        once = cli.json("job-run", "list", "once_job")
        assert [(r["number"], r["status"]) for r in once] == [(1, "completed")]
        assert follow["status"] == "completed" and follow["cause_run_id"] == once[0]["run_id"]
        assert [r["number"] for r in cli.json("job-run", "list", "follow")] == [1]
        log = cli.run("logs", "once_job").stdout
        assert log.count("once ran") == 1
        # one process: started the ordinary way, or prepared ahead and released at the tick
        assert log.count("» starting") + log.count("» released the prepared process") == 1
    finally:
        server.stop()
