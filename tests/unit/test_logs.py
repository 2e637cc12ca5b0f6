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
    assert (again.lines, again.next_offset, again.more) == ([], partial.next_offset, False)
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


def test_a_read_stops_at_its_byte_cap_and_says_more_is_waiting(tmp_path: Path) -> None:
    for i in range(10):
        append(tmp_path, job_line("out", f"{i} " + "w" * 100))
    size = logs.path(tmp_path).stat().st_size
    one = len(job_line("out", "0 " + "w" * 100))

    first = logs.read(tmp_path, max_bytes=3 * one + 5)  # three lines and a bit of the fourth
    pages = [first]
    while pages[-1].more:
        pages.append(logs.read(tmp_path, pages[-1].next_offset, max_bytes=3 * one + 5))

    assert [len(p.lines) for p in pages] == [3, 3, 3, 1]
    assert first.size == size and first.next_offset == 3 * one
    assert [ln["m"][:1] for p in pages for ln in p.lines] == [str(i) for i in range(10)]
    assert pages[-1].next_offset == size


def test_the_line_limit_also_says_more_is_waiting(tmp_path: Path) -> None:
    for i in range(4):
        append(tmp_path, job_line("out", f"line {i}"))

    assert logs.read(tmp_path, limit=2).more is True
    assert logs.read(tmp_path, limit=4).more is False


def test_a_line_longer_than_a_read_is_skipped_with_a_note(tmp_path: Path) -> None:
    append(tmp_path, job_line("out", "before"))
    start = logs.path(tmp_path).stat().st_size
    append(tmp_path, job_line("out", "x" * 5000))  # written by an older, unbounded version
    append(tmp_path, job_line("out", "after"))

    skipped = logs.read(tmp_path, start, max_bytes=1000)
    after = logs.read(tmp_path, skipped.next_offset, max_bytes=1000)

    assert skipped.lines[0]["s"] == "sys" and "bytes was skipped" in skipped.lines[0]["m"]
    assert skipped.more is True
    assert [ln["m"] for ln in after.lines] == ["after"]


def test_a_long_line_still_being_written_waits(tmp_path: Path) -> None:
    append(tmp_path, b'{"t": null, "s": "out", "m": "' + b"x" * 5000)

    chunk = logs.read(tmp_path, 0, max_bytes=1000)

    assert (chunk.lines, chunk.next_offset, chunk.more) == ([], 0, False)


def test_tail_offset_finds_where_the_last_lines_start(tmp_path: Path) -> None:
    lines = [job_line("out", f"line {i} " + "y" * (i * 37 % 200)) for i in range(3000)]
    for line in lines:
        append(tmp_path, line)
    append(tmp_path, b'{"partial')  # a line still being written is not one of them

    for count in (0, 1, 2, 999, 2999, 3000, 5000):
        start = logs.tail_offset(tmp_path, count)
        chunk = logs.read(tmp_path, start)
        expected = [f"line {i}" for i in range(max(0, 3000 - count), 3000)]
        assert [ln["m"].rsplit(" ", 1)[0] for ln in chunk.lines] == expected
    assert logs.tail_offset(tmp_path / "missing", 5) == 0


def test_count_lines_counts_complete_lines_and_keeps_counting(tmp_path: Path) -> None:
    for i in range(5):
        append(tmp_path, job_line("out", f"line {i}"))
    append(tmp_path, b'{"half')

    assert logs.count_lines(tmp_path) == 5
    append(tmp_path, b'"}\n' + job_line("err", "more"))
    assert logs.count_lines(tmp_path) == 7
    assert logs.count_lines(tmp_path / "missing") == 0


def test_last_time_reads_the_stream_s_last_line_from_the_end(tmp_path: Path) -> None:
    for i in range(2000):
        stamp = f"2026-03-04T10:{i // 60:02d}:{i % 60:02d}+00:00"
        stream = "out" if i < 1500 else "err"
        entry = {"t": stamp, "s": stream, "m": f"{i} " + "z" * 80}
        append(tmp_path, json.dumps(entry).encode() + b"\n")

    assert logs.last_time(tmp_path, "out") == "2026-03-04T10:24:59+00:00"  # line 1499
    assert logs.last_time(tmp_path, "err") == "2026-03-04T10:33:19+00:00"  # line 1999
    assert logs.last_time(tmp_path, "sys") is None
    assert logs.last_time(tmp_path / "missing", "out") is None


def test_system_lines_are_bounded_like_the_job_s(tmp_path: Path) -> None:
    logs.system(tmp_path, "e" * 100_000)

    (line,) = logs.read(tmp_path).lines
    assert line["m"] == "e" * 65536 + f" [line truncated: {100_000 - 65536} bytes]"


def test_a_streams_tail_is_read_from_the_end_only(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert logs.stream_tail(run, "err") == []
    append(run, b"".join(job_line("out", f"printed {i}") for i in range(3000)))
    append(run, b"not json\n" + job_line("sys", "run failed"))
    append(run, b"".join(job_line("err", f"line {i}") for i in range(50)))
    append(run, job_line("out", "after"))

    assert logs.stream_tail(run, "err") == [f"line {i}" for i in range(50)]
    assert logs.stream_tail(run, "err", max_lines=3) == ["line 47", "line 48", "line 49"]
    small = logs.stream_tail(run, "err", max_bytes=1000)  # the read starts mid-line
    assert small and small[-1] == "line 49" and len(small) < 50
    assert all(text.startswith("line ") for text in small)
