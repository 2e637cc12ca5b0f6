"""LocalExecutor with real supervised processes (plain Python and sh, no dlt)."""

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.controller import envs, logs
from dockyard.controller.executors.base import ExitStatus, RunSpec
from dockyard.controller.executors.local import LocalExecutor
from dockyard.shim.supervisor import start_ticks

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
DEADLINE_S = 20.0
NO_SUCH_PGID = 2**22 + 7  # above Linux's largest pid_max


@pytest.fixture
def runs_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "runs"
    # never leave a job process behind, whatever a test did
    for proc_file in (tmp_path / "runs").glob("*/proc.json"):
        pgid = int(json.loads(proc_file.read_text())["pgid"])
        if pgid > 1 and pgid != os.getpgrp():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


def spec(runs_dir: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> RunSpec:
    run_dir = runs_dir / name
    cwd = runs_dir / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    return RunSpec(name, run_dir, argv, cwd, dict(ENV if env is None else env))


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def wait_done(executor: LocalExecutor, run_dir: Path) -> ExitStatus:
    deadline = time.monotonic() + DEADLINE_S
    while (status := executor.poll(run_dir)) is None:
        assert time.monotonic() < deadline, "run did not end"
        time.sleep(0.02)
    return status


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} did not appear"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Running, not a zombie that nobody reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_run_logs_both_streams_and_exits_zero(runs_dir: Path) -> None:
    executor = LocalExecutor()
    run = spec(runs_dir, "r1", python("print('hi'); import sys; print('err', file=sys.stderr)"))

    executor.spawn(run)
    status = wait_done(executor, run.run_dir)

    assert status == ExitStatus(returncode=0, signal=None, error=None)
    lines = logs.read(run.run_dir).lines
    assert sorted((line["s"], line["m"]) for line in lines) == [("err", "err"), ("out", "hi")]
    assert all(line["t"] for line in lines)


def test_a_run_and_an_environment_build_yield_the_cpu_at_the_executors_niceness(
    runs_dir: Path, tmp_path: Path
) -> None:
    """Under a burst the control plane keeps its share of the CPU: the job (and what it
    starts) runs `nice` steps below the server, and so does an environment build."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    executor = LocalExecutor(tmp_path / "envs", nice=7)
    code = "import os, subprocess; print(os.getpriority(os.PRIO_PROCESS, 0));"
    code += " print(subprocess.run(['nice'], capture_output=True, text=True).stdout.strip())"
    code += " ; print(open('/proc/self/autogroup').read().split()[-1] if"
    code += " os.path.exists('/proc/self/autogroup') else 'no autogroups')"
    run = spec(runs_dir, "niced", python(code))
    executor.spawn(run)
    assert wait_done(executor, run.run_dir).returncode == 0
    lines = [line["m"] for line in logs.read(run.run_dir).lines]
    assert lines[:2] == [str(min(19, base + 7))] * 2
    # with autogroups (a session's share first), the run's session is niced too: its own
    # niceness alone would count only against its own processes
    assert lines[2] == ("7" if Path("/proc/self/autogroup").exists() else "no autogroups")
    assert executor.builder is not None and executor.builder.nice == 7
    built: list[str] = []  # each step of a build (uv venv, uv pip install) runs so too
    envs._run(["sh", "-c", "nice"], built.append, executor.builder.nice)
    assert built == [str(min(19, base + 7))]


def test_output_lines_keep_their_order_per_stream(runs_dir: Path) -> None:
    executor = LocalExecutor()
    code = "import sys\nfor i in range(200):\n    print(f'line {i}', flush=i % 7 == 0)"
    run = spec(runs_dir, "r1", python(code))

    executor.spawn(run)
    wait_done(executor, run.run_dir)

    out = [line["m"] for line in logs.read(run.run_dir).lines if line["s"] == "out"]
    assert out == [f"line {i}" for i in range(200)]


def test_the_job_gets_exactly_its_environment_and_working_directory(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_TEST_LEAK", "controller secret")
    executor = LocalExecutor()
    code = (
        "import os, json\n"
        "print(json.dumps({'cwd': os.getcwd(), 'run': os.environ.get('DOCKYARD_RUN_ID'),"
        " 'leak': os.environ.get('DOCKYARD_TEST_LEAK')}))"
    )
    run = spec(runs_dir, "r1", python(code), {**ENV, "DOCKYARD_RUN_ID": "r1"})

    executor.spawn(run)
    wait_done(executor, run.run_dir)

    (line,) = logs.read(run.run_dir).lines
    assert json.loads(line["m"]) == {"cwd": str(run.cwd), "run": "r1", "leak": None}


def test_the_spec_is_stored_readable_by_the_owner_only(runs_dir: Path) -> None:
    executor = LocalExecutor()
    run = spec(runs_dir, "r1", python("pass"), {**ENV, "SECRET": "s3cr3t"})

    executor.spawn(run)
    wait_done(executor, run.run_dir)

    stored = run.run_dir / "spec.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert json.loads(stored.read_text())["env"]["SECRET"] == "s3cr3t"


def test_a_non_zero_exit_code_is_reported(runs_dir: Path) -> None:
    executor = LocalExecutor()
    run = spec(runs_dir, "r1", python("import sys; print('about to fail'); sys.exit(3)"))

    executor.spawn(run)

    assert wait_done(executor, run.run_dir) == ExitStatus(returncode=3, signal=None)


def test_a_job_that_cannot_start_ends_with_an_error(runs_dir: Path) -> None:
    executor = LocalExecutor()
    run = spec(runs_dir, "r1", [str(runs_dir / "no-such-python"), "-c", "pass"])

    executor.spawn(run)
    status = wait_done(executor, run.run_dir)

    assert status.returncode == 127
    assert status.error is not None and "no-such-python" in status.error
    assert logs.read(run.run_dir).lines[0]["m"].startswith("could not start the job")


def test_launched_tells_whether_start_handed_the_run_over(runs_dir: Path) -> None:
    executor = LocalExecutor()
    run = spec(runs_dir, "r1", python("pass"))

    assert not executor.launched(run.run_dir)
    executor.spawn(run)
    assert executor.launched(run.run_dir)
    wait_done(executor, run.run_dir)
    assert executor.launched(run.run_dir)


def test_sigterm_ends_a_sleeping_run_with_signal_15(runs_dir: Path) -> None:
    executor = LocalExecutor()
    run = spec(runs_dir, "r1", ["sleep", "30"])
    executor.spawn(run)
    wait_for(run.run_dir / "proc.json")

    assert executor.poll(run.run_dir) is None
    assert executor.signal(run.run_dir, signal.SIGTERM)
    status = wait_done(executor, run.run_dir)

    assert status == ExitStatus(returncode=None, signal=signal.SIGTERM)
    assert status.signal == 15


def test_a_signal_reaches_the_whole_process_group(runs_dir: Path) -> None:
    executor = LocalExecutor()
    run = spec(runs_dir, "r1", ["/bin/sh", "-c", "sleep 30 & echo $! > grandchild.pid; wait"])
    executor.spawn(run)
    pid_file = run.cwd / "grandchild.pid"
    wait_for(pid_file)
    deadline = time.monotonic() + DEADLINE_S
    while not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    grandchild = int(pid_file.read_text())
    assert alive(grandchild)

    executor.signal(run.run_dir, signal.SIGTERM)
    wait_done(executor, run.run_dir)

    deadline = time.monotonic() + DEADLINE_S
    while alive(grandchild):
        assert time.monotonic() < deadline, "the job's child outlived the signal"
        time.sleep(0.02)


def test_signalling_an_ended_run_does_nothing(runs_dir: Path) -> None:
    executor = LocalExecutor()
    run = spec(runs_dir, "r1", python("pass"))
    executor.spawn(run)
    wait_done(executor, run.run_dir)

    assert not executor.signal(run.run_dir, signal.SIGTERM)
    assert not executor.signal(runs_dir / "never-started", signal.SIGTERM)


def test_a_restarted_controller_adopts_a_running_job(runs_dir: Path) -> None:
    original = LocalExecutor()
    run = spec(runs_dir, "r1", ["sleep", "30"])
    original.spawn(run)
    wait_for(run.run_dir / "proc.json")

    restarted = LocalExecutor()  # holds no Popen: knows the run from its files only
    assert restarted.launched(run.run_dir)
    assert restarted.poll(run.run_dir) is None
    assert restarted.signal(run.run_dir, signal.SIGTERM)
    status = wait_done(restarted, run.run_dir)

    assert status == ExitStatus(returncode=None, signal=signal.SIGTERM)
    assert wait_done(original, run.run_dir) == status  # and the first one reaps its child


def test_a_restarted_controller_reads_how_an_ended_job_exited(runs_dir: Path) -> None:
    original = LocalExecutor()
    run = spec(runs_dir, "r1", python("import sys; sys.exit(4)"))
    original.spawn(run)
    wait_done(original, run.run_dir)

    assert LocalExecutor().poll(run.run_dir) == ExitStatus(returncode=4, signal=None)


def test_a_run_whose_job_vanished_without_a_status_is_lost(runs_dir: Path) -> None:
    # what a restarted controller finds after the machine rebooted: files, no processes
    run_dir = runs_dir / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps({"argv": ["sleep", "1"], "cwd": "/", "env": {}}))
    # the recorded pid now names another process (ours), with other start ticks
    assert start_ticks(os.getpid()) not in (None, -1)
    proc = {"pid": os.getpid(), "pgid": NO_SUCH_PGID, "ticks": -1}
    (run_dir / "proc.json").write_text(json.dumps(proc))

    status = LocalExecutor().poll(run_dir)

    assert status is not None
    assert status.returncode is None and status.signal is None
    assert status.error is not None and status.error.startswith("lost")
    assert not LocalExecutor().signal(run_dir, signal.SIGTERM)  # a reused pid is left alone


def test_an_adopted_run_is_not_lost_while_its_supervisor_drains_output(runs_dir: Path) -> None:
    # the job exits at once, but a background child keeps its stdout open for 5 s: the
    # supervisor is still draining it and has not written exit.json yet
    original = LocalExecutor()
    run = spec(runs_dir, "r1", ["sh", "-c", "sleep 5 & exit 0"])
    original.spawn(run)
    wait_for(run.run_dir / "proc.json")
    restarted = LocalExecutor()
    seen: list[None] = []
    while (status := restarted.poll(run.run_dir)) is None:
        seen.append(None)
        time.sleep(0.05)

    assert status == ExitStatus(returncode=0, signal=None)
    assert seen  # it was polled while the supervisor drained, and never called lost
    wait_done(original, run.run_dir)
