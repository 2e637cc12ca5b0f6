"""Held runs: a real process started through dlt's job launcher ahead of its tick, released
with its launch arguments, discarded, or left behind by a dead controller."""

import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from dockyard.controller.executors.base import ExitStatus, RunSpec
from dockyard.controller.executors.local import LocalExecutor
from dockyard.shim import SHIM
from dockyard.shim.rundir import JOB as JOB_DIR
from dockyard.shim.rundir import RELEASED
from tests.integration.test_local_executor import runs_dir, wait_done, wait_for

LAUNCHER = "dlt._workspace.deployment.launchers.job"
JOB = 'import dlt.hub.run as run\n\n@run.job\ndef hello():\n    print("user code ran")\n'
NOT_RELEASED = 75
__all__ = ["runs_dir"]  # the fixture, shared with the executor tests


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / ".dlt").mkdir(parents=True)
    (ws / ".dlt" / ".workspace").touch()
    (ws / "jobs.py").write_text(JOB)
    return ws


def held_spec(runs_dir: Path, ws: Path, name: str) -> RunSpec:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "WORKSPACE__PROFILE": "prod",
        "HOME": os.environ.get("HOME", "/tmp"),
    }
    run_dir = runs_dir / name
    release, marker = str(run_dir / "release"), str(run_dir / JOB_DIR / RELEASED)
    argv = [sys.executable, "-u", str(SHIM), "held", release, marker, LAUNCHER, "60"]
    return RunSpec(name, runs_dir / name, argv, ws, env, held=True)


def launch_args(run_id: str) -> list[str]:
    entry = {
        "module": "jobs",
        "function": "hello",
        "job_type": "batch",
        "launcher": LAUNCHER,
        "job_ref": "jobs.jobs.hello",
        "profile": "prod",
        "refresh": False,
    }
    return [
        "--run-id",
        run_id,
        "--trigger",
        "schedule:* * * * *",
        "--entry-point",
        json.dumps(entry),
    ]


def output(run_dir: Path) -> str:
    return "\n".join(json.loads(ln)["m"] for ln in (run_dir / "log.jsonl").read_text().splitlines())


def test_a_released_run_runs_the_job(runs_dir: Path, workspace: Path) -> None:
    executor = LocalExecutor()
    spec = held_spec(runs_dir, workspace, "r1")
    executor.spawn(spec)
    assert executor.held_unreleased(spec.run_dir)
    assert executor.release(spec.run_dir, {"args": launch_args("r1")})
    assert wait_done(executor, spec.run_dir) == ExitStatus(0, None)
    assert "user code ran" in output(spec.run_dir)
    assert not executor.held_unreleased(spec.run_dir)


def test_a_discarded_run_never_runs_user_code(runs_dir: Path, workspace: Path) -> None:
    executor = LocalExecutor()
    spec = held_spec(runs_dir, workspace, "r1")
    executor.spawn(spec)
    assert executor.release(spec.run_dir, {"discard": True})
    assert wait_done(executor, spec.run_dir) == ExitStatus(NOT_RELEASED, None)
    assert "user code ran" not in output(spec.run_dir)
    assert executor.held_unreleased(spec.run_dir)


def test_a_held_run_whose_controller_died_exits_without_running(
    runs_dir: Path, workspace: Path
) -> None:
    executor = LocalExecutor()
    spec = held_spec(runs_dir, workspace, "r1")
    executor.spawn(spec)
    wait_for(spec.run_dir / "proc.json")
    # what the controller's death does to the FIFO: its end is closed
    os.close(executor._releases.pop(spec.run_dir))
    status = wait_done(LocalExecutor(), spec.run_dir)
    assert status == ExitStatus(NOT_RELEASED, None)
    assert "user code ran" not in output(spec.run_dir)


SECRET_JOB = """import hashlib
import dlt
import dlt.hub.run as run

@run.job
def hello():
    key = dlt.secrets.get("sources.api.key")
    print("the key is", key, flush=True)
    print("its sha256", hashlib.sha256(str(key).encode()).hexdigest(), flush=True)
"""


def waiting_on_release(pid: int, release: Path) -> bool:
    """The held process has opened its release FIFO: its run context is made."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) == str(release) for fd in fds.iterdir())
    except OSError:
        return False


@pytest.mark.parametrize("reload", [True, False], ids=["config-reloaded", "not-reloaded"])
def test_a_held_run_gets_its_secrets_at_release_and_its_log_hides_them(
    runs_dir: Path, workspace: Path, reload: bool
) -> None:
    """A held process waits without its secrets (made its run context without them); they
    are written at release with the redaction list, the job reads them (only because dlt's
    configuration is read again: without `"config"` it finds nothing) and the supervisor,
    started before they existed, hides them in the log."""
    import hashlib
    import secrets

    (workspace / "jobs.py").write_text(SECRET_JOB)
    executor = LocalExecutor()
    spec = held_spec(runs_dir, workspace, "r1")
    settings = spec.run_dir / "dlt"
    settings.mkdir(parents=True)
    spec.env["DLT_CONFIG_FOLDER"] = str(settings)
    executor.spawn(spec)
    wait_for(spec.run_dir / "proc.json")
    pid = int(json.loads((spec.run_dir / "proc.json").read_text())["pid"])
    deadline = time.monotonic() + 60
    while not waiting_on_release(pid, spec.run_dir / "release"):
        assert time.monotonic() < deadline, "the held process never waited for its release"
        time.sleep(0.05)
    key = "sk-" + secrets.token_hex(12)
    (settings / "secrets.toml").write_text(f'[sources.api]\nkey = "{key}"\n')
    (settings / ".dockyard-redact.json").write_text(json.dumps([key]))
    payload: dict[str, object] = {"args": launch_args("r1")}
    if reload:
        payload["config"] = True
    assert executor.release(spec.run_dir, payload)
    assert wait_done(executor, spec.run_dir) == ExitStatus(0, None)
    log = output(spec.run_dir)
    assert key not in log
    if reload:
        assert hashlib.sha256(key.encode()).hexdigest() in log
        assert "the key is ***" in log
    else:  # the run context was made before the secrets existed
        assert "the key is None" in log


def test_a_prepared_run_whose_tick_passed_untaken_is_discarded(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from dockyard.controller.prepare import RunIdentity
    from dockyard.controller.prewarm import Key, Prewarmer, Warm

    released: list[tuple[Path, dict[str, object]]] = []

    class Recorder(LocalExecutor):
        def release(self, run_dir: Path, payload: dict[str, object]) -> bool:
            released.append((run_dir, payload))
            return True

        def poll(self, run_dir: Path) -> ExitStatus | None:
            return None

    class Settings:
        runs_dir = tmp_path / "runs"

    class Preparer:
        settings = Settings()

    lifecycle = SimpleNamespace(node="n1")  # only its node name is read here
    prewarmer = Prewarmer(None, Preparer(), Recorder(), lifecycle, lead_s=5)  # type: ignore[arg-type]
    due = datetime(2026, 3, 4, 10, 5, tzinfo=UTC)
    warm = Warm(
        RunIdentity("r1", "prod", "d", "c"),
        Key(1, "d", "c", "prod"),
        "schedule:*/5 * * * *",
        due,
        tmp_path / "runs" / "r1",
    )
    prewarmer._warm[(1, warm.trigger)] = warm
    prewarmer._expire(due + timedelta(seconds=4))
    assert released == []
    prewarmer._expire(due + timedelta(seconds=6))
    assert released == [(warm.run_dir, {"discard": True})] and prewarmer._warm == {}


def test_each_node_keeps_its_own_prewarm_index_and_retention_sees_them_all(
    tmp_path: Path,
) -> None:
    from dockyard.controller import prewarm

    runs = tmp_path / "runs"
    a, b = prewarm.index_dir(runs, "ctl-a"), prewarm.index_dir(runs, "ctl-b")
    assert a != b and a.parent == b.parent  # one controller's recover never reads the other's
    for index, run_id in ((a, "r-a"), (b, "r-b")):
        index.mkdir(parents=True)
        (index / run_id).touch()
    (a.parent / "r-old").touch()  # left by a version without per-node indexes
    assert sorted(prewarm.held_runs(runs)) == ["r-a", "r-b", "r-old"]
