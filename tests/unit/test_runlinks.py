"""What a follow-up is told about its upstream run: the same fields as environment variables
and as dlt's `run_args`, the reason bounded and fit for an environment value."""

from datetime import UTC, datetime
from pathlib import Path

from dockyard.clock import FakeClock
from dockyard.controller import envs, runlinks
from dockyard.controller.executors import local
from dockyard.controller.executors.base import RunPlan
from dockyard.controller.executors.docker import containers, events
from dockyard.controller.executors.docker.config import DockerConfig
from dockyard.controller.executors.docker.engine import Engine
from dockyard.controller.runlinks import Upstream

BASE = "http://127.0.0.1:8000"


def upstream(reason: str | None) -> Upstream:
    return Upstream("my ws", "jobs.usgs.backfill", 3, "abc-123", "failed", reason)


def test_the_environment_names_the_upstream_run_and_its_page() -> None:
    env = upstream("ValueError: bad row").environment(BASE)
    assert env == {
        "DOCKYARD_UPSTREAM_WORKSPACE": "my ws",
        "DOCKYARD_UPSTREAM_JOB": "jobs.usgs.backfill",
        "DOCKYARD_UPSTREAM_RUN_NUMBER": "3",
        "DOCKYARD_UPSTREAM_RUN_ID": "abc-123",
        "DOCKYARD_UPSTREAM_STATUS": "failed",
        "DOCKYARD_UPSTREAM_REASON": "ValueError: bad row",
        "DOCKYARD_UPSTREAM_URL": f"{BASE}/ui/w/my%20ws/runs/abc-123",
    }


def test_run_args_carry_the_same_fields_with_the_number_as_an_int() -> None:
    args = upstream(None).run_args(BASE)
    assert args["upstream_run_number"] == 3 and args["upstream_reason"] == ""
    assert args["upstream_job"] == "jobs.usgs.backfill"
    assert set(args) == {
        "upstream_workspace",
        "upstream_job",
        "upstream_run_number",
        "upstream_run_id",
        "upstream_status",
        "upstream_reason",
        "upstream_url",
    }


def test_a_long_reason_is_cut_and_a_nul_removed() -> None:
    reason = upstream("a\x00b" + "x" * 5000).environment(BASE)["DOCKYARD_UPSTREAM_REASON"]
    assert len(reason) == runlinks.REASON_MAX and reason.startswith("abx") and reason[-1] == "…"


def test_both_executors_hand_the_variables_to_the_job_process(tmp_path: Path) -> None:
    told = upstream("boom").environment(BASE)
    where = tmp_path / "x"
    spec = envs.EnvSpec("3.11", ("dlt==1.31.0",))
    plan = RunPlan("r", where, spec, where, where, where, "launcher", [], dict(told), "t")
    local_env = local.LocalExecutor()._environment(plan, where / "bin" / "python", where)
    clock = FakeClock(datetime(2026, 3, 4, tzinfo=UTC))
    outages = events.Outages(Engine(lambda: None), clock, pause=lambda seconds: None)
    config = DockerConfig(base_image="base")
    docker_env = containers.Containers(config, outages, None, lambda: BASE)._environment(plan)  # type: ignore[arg-type]
    for env in (local_env, docker_env):
        assert {k: v for k, v in env.items() if k.startswith("DOCKYARD_UPSTREAM_")} == told
