"""The pure parts of workers: which stop a heartbeat hands out, which bytes of a log
shipment the server appends, and which bytes a worker ships next (complete lines only)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dockyard.controller.workerside import LogGap, Stop, new_part, stop_for
from dockyard.worker import state as st

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_a_cancelling_run_gets_sigterm_once_then_sigkill_after_its_grace() -> None:
    assert stop_for("r", "cancelling", "cancel", None, None, 5.0, NOW) == Stop(
        "r", "TERM", "cancel", True
    )
    asked = NOW - timedelta(seconds=2)
    assert stop_for("r", "cancelling", "cancel", asked, None, 5.0, NOW) is None
    late = NOW - timedelta(seconds=6)
    assert stop_for("r", "cancelling", "cancel", late, None, 5.0, NOW) == Stop(
        "r", "KILL", "cancel", False
    )


def test_a_run_past_its_deadline_gets_sigterm_for_timeout_and_others_nothing() -> None:
    past = NOW - timedelta(seconds=1)
    assert stop_for("r", "running", None, None, past, 5.0, NOW) == Stop(
        "r", "TERM", "timeout", True
    )
    future = NOW + timedelta(seconds=1)
    assert stop_for("r", "running", None, None, future, 5.0, NOW) is None
    assert stop_for("r", "running", None, None, None, 5.0, NOW) is None


def test_a_log_shipment_appends_only_what_the_server_lacks() -> None:
    data = b"a\nbb\n"
    assert new_part(0, 0, data) == data
    assert new_part(2, 0, data) == b"bb\n"  # the first line was shipped already
    assert new_part(5, 0, data) == b""  # a resend
    assert new_part(9, 0, data) == b""
    with pytest.raises(LogGap) as gap:
        new_part(2, 3, b"x\n")
    assert gap.value.expected == 2


def test_a_worker_ships_complete_lines_from_its_offset(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    assert st.next_chunk(log, 0) == b""  # no log yet
    log.write_bytes(b"one\ntwo\nthr")
    assert st.next_chunk(log, 0) == b"one\ntwo\n"
    assert st.next_chunk(log, 4) == b"two\n"
    assert st.next_chunk(log, 8) == b""  # a line still being written waits
    assert st.next_chunk(log, 0, limit=5) == b"one\n"
    log.write_bytes(b"x" * 20 + b"\nrest\n")
    assert st.next_chunk(log, 0, limit=5) == b"x" * 20 + b"\n"  # one long line goes whole


def test_run_state_files_round_trip_and_are_forgotten(tmp_path: Path) -> None:
    states = st.StateDir(tmp_path / "state")
    one = st.RunState("r1", 3, "ws", "abc").with_shipped(42)
    states.save(one)
    (tmp_path / "state" / "junk.json").write_text("{not json")
    assert states.load_all() == [one]
    states.forget("r1")
    assert states.load_all() == []


def test_embedded_runs_is_on_unless_the_environment_says_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dockyard.settings import Settings

    assert Settings.from_env().embedded_runs is True
    monkeypatch.setenv("DOCKYARD_EMBEDDED_RUNS", "off")
    assert Settings.from_env().embedded_runs is False
    monkeypatch.setenv("DOCKYARD_EMBEDDED_RUNS", "maybe")
    with pytest.raises(ValueError, match="neither on nor off"):
        Settings.from_env()


def test_a_worker_runs_its_jobs_niced_unless_told_otherwise(tmp_path: Path) -> None:
    """A worker host's runs and environment builds yield the CPU to its agent (heartbeats,
    log uploads), like a server's; `--nice 0` leaves them as the agent is."""
    from dockyard.controller.executors.local import LocalExecutor
    from dockyard.worker.agent import Options, make_executor

    default = make_executor(Options("http://s", "t", data_dir=tmp_path))
    off = make_executor(Options("http://s", "t", nice=0, data_dir=tmp_path))
    assert isinstance(default, LocalExecutor) and isinstance(off, LocalExecutor)
    assert (default.nice, off.nice) == (10, 0)
    assert default.builder is not None and default.builder.nice == 10
