"""What the CLI prints of text it did not write (job logs, results, names): control
characters are shown, never sent to the terminal (dockyard/cli/output.py)."""

from dockyard.cli import output


def test_control_characters_are_shown_as_escapes() -> None:
    assert output.visible("\x1b]0;title\x07 \x1b[2J") == "\\x1b]0;title\\x07 \\x1b[2J"
    assert output.visible("c1 \x9b31m, del \x7f, nul \x00") == "c1 \\x9b31m, del \\x7f, nul \\x00"
    assert output.visible("over\rprinted\nnext") == "over\\rprinted\\nnext"


def test_tabs_and_ordinary_text_are_kept() -> None:
    assert output.visible("a\tb grüße ✓ \u00a0") == "a\tb grüße ✓ \u00a0"
    assert output.visible("two\nlines", keep="\t\n") == "two\nlines"


def test_a_log_line_is_shown_with_its_time_and_made_visible() -> None:
    line = {"t": "2026-03-04T10:11:12+00:00", "s": "out", "m": "red \x1b[31mRED"}
    assert output.log_line(line) == "10:11:12 red \\x1b[31mRED"
    assert output.log_line({"t": None, "s": "sys", "m": "note"}) == " » note"


def test_table_cells_are_made_visible() -> None:
    assert output._cell("tag\x1b[2J") == "tag\\x1b[2J"
    assert output._cell(["a\x07", "b"]) == "a\\x07, b"
