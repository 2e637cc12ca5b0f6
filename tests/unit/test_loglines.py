"""The one line splitter of run logs: bounded lines, the same whatever the pipe cut them
into, secrets redacted on the whole line (dockyard/shim/loglines.py)."""

import tracemalloc

from dockyard.shim import loglines

SECRET = "s3cr3t-value-0123456789"


def split(pieces: list[bytes], secrets: tuple[str, ...] = (), max_line: int = 64) -> list[str]:
    lines: list[str] = []
    splitter = loglines.LineSplitter(lines.append, loglines.Redactor(secrets), max_line)
    for piece in pieces:
        splitter.feed(piece)
    splitter.close()
    return lines


def every_cut(data: bytes) -> list[list[bytes]]:
    """`data` cut in two at every position, and one byte at a time."""
    return [[data[:i], data[i:]] for i in range(len(data) + 1)] + [
        [data[i : i + 1] for i in range(len(data))]
    ]


def test_lines_are_the_same_however_the_stream_is_cut() -> None:
    data = b"one\ntwo\r\n\nthree without end"
    for pieces in every_cut(data):
        assert split(pieces) == ["one", "two", "", "three without end"]


def test_a_long_line_is_cut_with_a_marker_saying_how_much_was_dropped() -> None:
    assert split([b"x" * 100 + b"\nnext\n"]) == [
        "x" * 64 + " [line truncated: 36 bytes]",
        "next",
    ]
    assert split([b"y" * 64 + b"\r\n"]) == ["y" * 64]  # the `\r\n` is not part of the line
    assert split([b"z" * 70 + b"\r\n"]) == ["z" * 64 + " [line truncated: 6 bytes]"]


def test_a_secret_across_any_split_is_redacted_whole() -> None:
    data = f"key={SECRET};\n".encode()
    for pieces in every_cut(data):
        assert split(pieces, (SECRET,)) == ["key=***;"]


def test_a_secret_across_the_cut_is_redacted_and_the_cut_moves_past_it() -> None:
    for start in range(40, 64):  # the secret straddles byte 64, or ends just before it
        data = b"a" * start + SECRET.encode() + b"b" * 50 + b"\n"
        for pieces in ([data], [data[: start + 3], data[start + 3 :]]):
            (line,) = split(pieces, (SECRET,))
            assert SECRET[3:] not in line and SECRET[:-3] not in line
            dropped = len(data) - 1 - max(64, start + len(SECRET))
            kept = line.split(" [line truncated:")[0]
            assert kept.startswith("a" * start + "***")
            assert line.endswith(f" [line truncated: {dropped} bytes]")


def test_a_secret_after_the_cut_is_dropped_with_the_rest() -> None:
    (line,) = split([b"a" * 70 + SECRET.encode() + b"\n"], (SECRET,))
    assert line == "a" * 64 + f" [line truncated: {6 + len(SECRET)} bytes]"


def test_the_longest_secret_wins_and_short_values_are_kept_as_given() -> None:
    assert split([b"abcdefgh abcd\n"], ("abcd", "abcdefgh")) == ["*** ***"]
    assert split([b"nothing to hide\n"], ()) == ["nothing to hide"]


def test_a_cut_never_splits_a_character() -> None:
    data = "é".encode() * 40 + b"\n"  # 80 bytes, two per character
    (line,) = split([data], max_line=63)
    assert line == "é" * 31 + " [line truncated: 18 bytes]"
    assert split([b"\xff\xfe ok\n"]) == ["\ufffd\ufffd ok"]


def test_a_huge_line_costs_bounded_memory() -> None:
    chunk = b"x" * 65536
    lines: list[str] = []
    splitter = loglines.LineSplitter(lines.append, loglines.Redactor([SECRET]))
    tracemalloc.start()
    for _ in range(256):  # 16 MiB without a newline
        splitter.feed(chunk)
    splitter.feed(b"\n")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert lines == ["x" * loglines.MAX_LINE + f" [line truncated: {(256 - 1) * 65536} bytes]"]
    assert peak < 8 * loglines.MAX_LINE  # a few copies of one line, not of 16 MiB


def test_close_emits_nothing_for_an_empty_stream() -> None:
    assert split([]) == []
    assert split([b"done\n"]) == ["done"]
