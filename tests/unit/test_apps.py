"""Apps: their names, and when an app is idle."""

from datetime import UTC, datetime, timedelta

from dockyard.controller import apps, runtime_config
from dockyard.controller.apps import is_idle
from tests.unit import samples

T0 = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


def test_the_name_is_the_short_name_unless_another_job_shares_it() -> None:
    refs = ["jobs.notebook", "jobs.tools.serve", "jobs.other.serve", "jobs.mcp_server"]

    assert apps.path_name("jobs.notebook", refs) == "notebook"
    assert apps.path_name("jobs.tools.serve", refs) == "tools.serve"
    assert apps.path_name("jobs.mcp_server", refs) == "mcp_server"


def test_idle_counts_from_the_latest_of_start_last_request_and_watch_start() -> None:
    at = T0 + timedelta(seconds=300)

    assert is_idle(T0, None, 0, 300, T0, at)
    assert not is_idle(T0, T0 + timedelta(seconds=1), 0, 300, T0, at)
    assert not is_idle(T0, None, 0, 300, T0 + timedelta(seconds=10), at)  # server restarted
    assert not is_idle(None, None, 0, 300, T0 + timedelta(seconds=10), at)


def test_an_open_connection_is_never_idle() -> None:
    assert not is_idle(T0, T0, 1, 300, T0, T0 + timedelta(days=2))


def test_activity_counts_open_connections() -> None:
    class Clock:
        def now(self) -> datetime:
            return T0

        def monotonic(self) -> float:
            return 0.0

    activity = apps.Activity(Clock())
    activity.opened("r")
    activity.opened("r")
    activity.closed("r")
    assert activity.state("r") == (T0, 1)
    activity.closed("r")
    assert activity.state("r") == (T0, 0)
    activity.touch("gone")
    activity.keep_only({"r"})
    assert activity.state("gone") == (None, 0)


def test_an_apps_timeout_is_its_idle_window() -> None:
    defaults = runtime_config.Defaults(timeout_s=7200.0, grace_s=30.0, idle_s=300.0)
    app = samples.job(samples.TINY_API)

    assert runtime_config.timeouts(app, defaults) == (300.0, 30.0)
    app["execute"]["timeout"] = {"timeout": 1800.0}  # @run.interactive(idle_timeout="30m")
    assert runtime_config.timeouts(app, defaults) == (1800.0, 30.0)
    assert runtime_config.timeouts(samples.job(samples.HELLO), defaults) == (7200.0, 30.0)


def test_recent_apps_expire_and_go_when_their_run_ends() -> None:
    from dockyard.clock import FakeClock

    clock = FakeClock(T0)
    recent = apps.Recent(clock, ttl_s=5.0)
    running = apps.App("ws", "jobs.nb", "nb", "running", 1, "run-1", 1, 5000)

    recent.put("nb", running)
    recent.put("starting", apps.App("ws", "jobs.x", "x", "starting", 1, "run-2"))
    assert recent.get("nb") == running
    assert recent.get("starting") is None  # only running apps are remembered
    clock.advance(6)
    assert recent.get("nb") is None
    recent.put("nb", running)
    recent.forget_run("run-1")
    assert recent.get("nb") is None


def test_an_mcp_server_is_reached_at_mcp_below_its_origin() -> None:
    mcp_module = {"entry_point": {"launcher": apps.MCP_LAUNCHER}, "expose": {}}
    declared = {"entry_point": {"launcher": samples.JOB_LAUNCHER}, "expose": {"interface": "mcp"}}
    notebook = {"entry_point": {"launcher": "dlt._workspace.deployment.launchers.marimo"}}

    assert apps.endpoint_path(mcp_module) == apps.endpoint_path(declared) == "mcp"
    assert apps.endpoint_path(notebook) is None
    assert apps.endpoint_path(samples.job(samples.TINY_API)) is None  # interface rest_api
