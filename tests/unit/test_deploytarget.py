"""The directory's workspace record in `.dlt/config.toml` and the most-jobs-archived rule."""

import tomllib
from pathlib import Path

import pytest

from dockyard.cli import deploytarget
from dockyard.cli.client import Client
from dockyard.cli.config import Target
from dockyard.controller import gitstore, planning
from dockyard.controller.gitstore import FileEntry
from dockyard.errors import Conflict, InvalidInput

KEPT = [
    '# shipped with the workspace\n[jobs.weather]\ncities = ["Berlin"]  # two\n',
    "[jobs.x]\na = 1",  # no newline at the end
    "[jobs.x]\r\na = 1\r\n",  # CRLF
    "",
]


@pytest.mark.parametrize("text", KEPT)
def test_the_record_is_a_first_line_and_every_other_byte_kept(text: str) -> None:
    out = deploytarget.with_record(text.encode(), "analytics").decode()
    first, _, rest = out.partition("\n")
    assert first.startswith('dockyard.workspace = "analytics"  # ')
    assert rest == ("\n" + text if text else "")
    assert tomllib.loads(out)["dockyard"] == {"workspace": "analytics"}


def test_keys_appended_later_stay_in_the_users_last_table() -> None:
    out = deploytarget.with_record(b"[jobs.x]\na = 1\n", "ws") + b'b = "added later"\n'
    assert tomllib.loads(out.decode()) == {
        "dockyard": {"workspace": "ws"},
        "jobs": {"x": {"a": 1, "b": "added later"}},
    }


def test_an_existing_dockyard_table_gets_the_key() -> None:
    text = '[dockyard]\nrecovery_recipient = "age1abc"\n\n[jobs.x]\na = 1\n'
    out = deploytarget.with_record(text.encode(), "ws").decode()
    assert (
        out == '[dockyard]\nrecovery_recipient = "age1abc"\nworkspace = "ws"\n\n[jobs.x]\na = 1\n'
    )


def test_no_file_becomes_a_file_with_the_record() -> None:
    out = deploytarget.with_record(None, "ws").decode()
    assert out.startswith('dockyard.workspace = "ws"') and out.count("\n") == 1


def test_a_dockyard_value_that_is_no_table_is_refused() -> None:
    with pytest.raises(InvalidInput, match="must be a table"):
        deploytarget.with_record(b'dockyard = "x"\n', "ws")


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text("[jobs\n")
    with pytest.raises(InvalidInput, match=r"^\.dlt/config\.toml: invalid TOML: .*line 1"):
        deploytarget.recorded(tmp_path)


def test_a_config_toml_not_in_utf8_names_the_line(tmp_path: Path) -> None:
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_bytes(b'a = 1\nname = "M\xfcller"\n')
    with pytest.raises(InvalidInput, match=r"config\.toml is not UTF-8 \(line 2\)"):
        deploytarget.recorded(tmp_path)


def _client(workspace: str, flag: bool) -> Client:
    return Client(Target("http://127.0.0.1:1", "t", workspace, True, workspace_flag=flag))


def _with_record(root: Path, name: str) -> Path:
    (root / ".dlt").mkdir(exist_ok=True)
    (root / ".dlt" / "config.toml").write_bytes(deploytarget.with_record(None, name))
    return root


def test_another_workspace_needs_the_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _with_record(tmp_path, "weather")
    monkeypatch.setenv("DOCKYARD_WORKSPACE", "demo")
    with pytest.raises(Conflict) as refused:
        deploytarget.check(root, _client("demo", flag=False))
    message = refused.value.message
    assert "'weather'" in message and "'demo'" in message and "DOCKYARD_WORKSPACE" in message
    assert "-w weather" in message and "-w demo" in message
    # named on the command line: allowed, and the record stays what it was
    assert deploytarget.check(root, _client("demo", flag=True)) == "weather"
    assert deploytarget.check(root, _client("weather", flag=False)) == "weather"


def test_an_unrecorded_directory_goes_anywhere(tmp_path: Path) -> None:
    assert deploytarget.check(tmp_path, _client("demo", flag=False)) is None


def test_the_commit_carries_the_record_only_on_first_deploy(tmp_path: Path) -> None:
    config = f"{gitstore.CONFIG}/config.toml"
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text("[jobs]\na = 1\n")
    files = {config: FileEntry(gitstore.MODE_FILE, b"[jobs]\na = 1\n")}
    out, record = deploytarget.plan_record(tmp_path, None, "ws", files)
    assert record is not None and out[config].data == record.after
    assert deploytarget.write(record) is None
    assert (tmp_path / ".dlt" / "config.toml").read_bytes() == record.after
    # recorded already: nothing changes
    assert deploytarget.plan_record(tmp_path, "ws", "ws", files) == (files, None)


def test_a_file_changed_during_the_deploy_is_left_alone(tmp_path: Path) -> None:
    _, record = deploytarget.plan_record(tmp_path, None, "ws", {})
    assert record is not None
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text("[jobs]\nb = 2\n")
    assert "changed during the deploy" in (deploytarget.write(record) or "")
    assert (tmp_path / ".dlt" / "config.toml").read_text() == "[jobs]\nb = 2\n"


def _plan(archived: int, kept: int) -> planning.Plan:
    old = {"jobs": [{"job_ref": f"jobs.j{i}", "x": i} for i in range(archived + kept)]}
    new = {"jobs": old["jobs"][archived:]}
    return planning.plan(old, new)


@pytest.mark.parametrize(
    ("archived", "kept", "asks"),
    [(1, 0, True), (4, 1, True), (3, 3, False), (2, 1, True), (1, 2, False), (0, 0, False)],
)
def test_every_job_or_more_than_half_archived_asks(archived: int, kept: int, asks: bool) -> None:
    assert deploytarget.archives_most(_plan(archived, kept)) is asks
