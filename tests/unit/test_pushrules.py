"""What a commit may hold (`pushrules`): names, modes, links, configuration files and entry
points, as the receive hook and `dockyard deploy` both check them."""

import pytest

from dockyard.controller import gitstore, pushrules
from dockyard.errors import InvalidInput
from tests.unit import samples
from tests.unit.samples import DASHBOARD, HELLO


@pytest.mark.parametrize(
    ("parent", "raw"),
    [("code/", b".git"), ("code/sub/", b".GIT"), ("config/", b".git."), ("code/", b"GIT~1")],
)
def test_git_metadata_is_refused_at_any_depth_and_case(parent: str, raw: bytes) -> None:
    with pytest.raises(InvalidInput, match=r"is git metadata \(\.git\)"):
        pushrules.entry_path(parent, raw)


def test_a_name_that_is_not_utf8_is_refused_and_shown() -> None:
    with pytest.raises(InvalidInput, match=r"path 'code/caf\\\\xe9.py' is not UTF-8"):
        pushrules.entry_path("code/", b"caf\xe9.py")


@pytest.mark.parametrize("raw", [b"", b".", b"..", b"a/b", b"a\0b"])
def test_names_that_escape_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidInput, match="escapes the workspace"):
        pushrules.entry_path("code/", raw)


def test_overlong_and_overdeep_paths_are_refused() -> None:
    with pytest.raises(InvalidInput, match="longer than"):
        pushrules.entry_path("code/", b"x" * pushrules.MAX_PATH_BYTES)
    with pytest.raises(InvalidInput, match="deeper than"):
        pushrules.entry_path("code/" + "d/" * pushrules.MAX_DEPTH, b"x.py")


def test_ordinary_names_pass() -> None:
    assert pushrules.entry_path("code/", b".gitignore") == "code/.gitignore"
    assert pushrules.entry_path("code/", "café.py".encode()) == "code/café.py"
    assert pushrules.entry_path("", b"code") == "code"


@pytest.mark.parametrize(
    ("path", "mode", "problem"),
    [
        ("notes.txt", gitstore.MODE_FILE, "unexpected path 'notes.txt'"),
        ("code", gitstore.MODE_LINK, "'code' must be a folder"),
        ("config", gitstore.MODE_FILE, "'config' must be a folder"),
        ("manifest.yaml", pushrules.MODE_TREE, "'manifest.yaml' must be a regular file"),
        ("requirements.json", gitstore.MODE_LINK, "must be a regular file"),
    ],
)
def test_the_top_level_holds_two_folders_and_two_files(path: str, mode: int, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        pushrules.check_top_level(path, mode)


def test_submodules_and_odd_modes_are_refused() -> None:
    with pytest.raises(InvalidInput, match="is a git submodule"):
        pushrules.check_mode("code/vendored", pushrules.MODE_SUBMODULE)
    with pytest.raises(InvalidInput, match="unsupported file mode 100664"):
        pushrules.check_mode("code/x.py", 0o100664)


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("code/a/x", "here/here/../../../etc/passwd"),  # through `here -> .`
        ("code/a/b/x", "l/../../y.py"),
        ("code/x", "a/../b.py"),  # harmless only while `a` is a real folder
    ],
)
def test_a_link_that_climbs_after_a_name_is_refused(path: str, target: str) -> None:
    with pytest.raises(InvalidInput, match="climbs out of a folder it entered") as err:
        pushrules.check_link(path, target)

    assert "write it as" in err.value.message


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("code/a/here", "."),
        ("code/a/y", "here/y.py"),
        ("code/a/b/c.py", "../../x/./y.py"),
        ("code/a/b/c.py", ".././../x//y.py"),
        ("config/prod.secrets.toml", "secrets.toml"),
    ],
)
def test_links_that_only_climb_first_are_allowed(path: str, target: str) -> None:
    pushrules.check_link(path, target)


@pytest.mark.parametrize(
    "target", [b"\xff.py", b"", b"a\0b", b"x" * (pushrules.MAX_LINK_BYTES + 1)]
)
def test_link_targets_that_are_not_paths_are_refused(target: bytes) -> None:
    with pytest.raises(InvalidInput, match="symlink 'code/l' has"):
        pushrules.check_link("code/l", target)


def test_toml_errors_name_the_file_and_line() -> None:
    with pytest.raises(InvalidInput, match=r"^\.dlt/config\.toml is not UTF-8 \(line 2\)"):
        pushrules.check_toml(".dlt/config.toml", b'[a]\nb = "caf\xe9"\n')
    with pytest.raises(InvalidInput, match=r"^config/x\.toml: invalid TOML: .*line 2"):
        pushrules.check_toml("config/x.toml", b'[a]\nb = "open\n')
    assert pushrules.check_toml("config/x.toml", b'[a]\nb = "ok"\n') == {"a": {"b": "ok"}}


def test_toml_errors_do_not_quote_the_offending_character() -> None:
    with pytest.raises(InvalidInput) as err:
        pushrules.check_toml("config/secrets.toml", b"[a]\nkey = s3cr3t\n")

    assert "s3cr3t" not in err.value.message and "'s'" not in err.value.message


def test_deeply_nested_toml_is_one_line() -> None:
    with pytest.raises(InvalidInput, match="invalid TOML"):
        pushrules.check_toml("config/x.toml", b"a = " + b"[" * 100_000 + b"]" * 100_000)


def test_every_entry_module_must_be_in_the_commit() -> None:
    manifest = samples.manifest(HELLO, DASHBOARD)  # the dashboard's module comes with dlt
    files = {"code/__deployment__.py"}

    pushrules.check_entry_points(manifest, files.__contains__)
    manifest["jobs"][0]["entry_point"]["module"] = "pipelines.hello"
    pushrules.check_entry_points(manifest, {"code/pipelines/hello/__init__.py"}.__contains__)
    pushrules.check_entry_points(manifest, {"code/pipelines/hello.py"}.__contains__)
    with pytest.raises(InvalidInput, match=r"'pipelines.hello' is not in the commit") as err:
        pushrules.check_entry_points(manifest, files.__contains__)

    assert HELLO in err.value.message and "code/pipelines/hello.py" in err.value.message
