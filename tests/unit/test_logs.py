"""Run logs: append-only JSON lines, read by byte offset so a follower never sees a line twice."""

import json
from datetime import datetime
from pathlib import Path

from dockyard.controller import logs


def append(run_dir: Path, data: bytes) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with logs.path(run_dir).open("ab") as f:
        f.write(data)


def job_line(stream: str, text: str) -> bytes:
    """A line as the supervisor writes it (UTF-8, not ASCII-escaped)."""
    line = json.dumps(
        {"t": "2026-03-04T10:00:00+00:00", "s": stream, "m": text}, ensure_ascii=False
    )
    return line.encode() + b"\n"


def test_a_missing_log_reads_as_empty_at_the_same_offset(tmp_path: Path) -> None:
    chunk = logs.read(tmp_path / "run", offset=17)

    assert chunk == logs.Chunk([], 17)


def test_system_lines_are_timestamped_json(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r1"  # created on first write

    logs.system(run_dir, "building environment 3f2a (Python 3.11, 4 requirements)")
    logs.system(run_dir, "starting dlt._workspace.deployment.launchers.job")

    chunk = logs.read(run_dir)
    assert [(line["s"], line["m"]) for line in chunk.lines] == [
        ("sys", "building environment 3f2a (Python 3.11, 4 requirements)"),
        ("sys", "starting dlt._workspace.deployment.launchers.job"),
    ]
    assert all(datetime.fromisoformat(line["t"]).tzinfo is not None for line in chunk.lines)
    assert chunk.next_offset == logs.path(run_dir).stat().st_size


def test_system_keeps_non_ascii_text(tmp_path: Path) -> None:
    logs.system(tmp_path, "grüße ✓")

    assert logs.read(tmp_path).lines[0]["m"] == "grüße ✓"
    assert "grüße ✓" in logs.path(tmp_path).read_text(encoding="utf-8")


def test_next_offset_continues_exactly_where_the_last_read_stopped(tmp_path: Path) -> None:
    append(tmp_path, job_line("out", "one") + job_line("err", "twö"))
    first = logs.read(tmp_path)

    append(tmp_path, job_line("out", "three"))
    second = logs.read(tmp_path, first.next_offset)
    third = logs.read(tmp_path, second.next_offset)

    assert [line["m"] for line in first.lines] == ["one", "twö"]
    assert [line["m"] for line in second.lines] == ["three"]
    assert third.lines == []
    assert third.next_offset == second.next_offset == logs.path(tmp_path).stat().st_size


def test_a_half_written_line_waits_until_it_is_complete(tmp_path: Path) -> None:
    whole = job_line("out", "a line written in two parts")
    append(tmp_path, job_line("out", "before"))
    append(tmp_path, whole[:20])

    partial = logs.read(tmp_path)
    again = logs.read(tmp_path, partial.next_offset)
    append(tmp_path, whole[20:])
    completed = logs.read(tmp_path, partial.next_offset)

    assert [line["m"] for line in partial.lines] == ["before"]
    assert partial.next_offset == len(job_line("out", "before"))
    assert again == logs.Chunk([], partial.next_offset)
    assert [line["m"] for line in completed.lines] == ["a line written in two parts"]
    assert completed.next_offset == partial.next_offset + len(whole)


def test_a_multibyte_character_split_across_writes_is_not_torn(tmp_path: Path) -> None:
    whole = job_line("out", "€uro")
    cut = whole.index("€".encode()) + 1  # inside the three bytes of the euro sign
    append(tmp_path, whole[:cut])

    assert logs.read(tmp_path).lines == []

    append(tmp_path, whole[cut:])
    assert logs.read(tmp_path).lines[0]["m"] == "€uro"


def test_limit_caps_the_lines_and_the_offset_resumes_after_them(tmp_path: Path) -> None:
    for i in range(7):
        append(tmp_path, job_line("out", f"line {i}"))

    first = logs.read(tmp_path, limit=3)
    rest = logs.read(tmp_path, first.next_offset, limit=3)
    last = logs.read(tmp_path, rest.next_offset, limit=3)

    assert [line["m"] for line in first.lines] == ["line 0", "line 1", "line 2"]
    assert [line["m"] for line in rest.lines] == ["line 3", "line 4", "line 5"]
    assert [line["m"] for line in last.lines] == ["line 6"]
    assert last.next_offset == logs.path(tmp_path).stat().st_size


def test_a_line_that_is_not_json_is_shown_as_text(tmp_path: Path) -> None:
    append(tmp_path, b"Traceback (most recent call last):\n" + job_line("err", "boom"))

    chunk = logs.read(tmp_path)

    assert chunk.lines[0]["s"] == "sys"
    assert chunk.lines[0]["t"] is None
    assert chunk.lines[0]["m"].startswith("Traceback (most recent call last):")
    assert chunk.lines[1]["m"] == "boom"
