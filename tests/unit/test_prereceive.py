"""The pure checks of the pre-receive hook: which ref may be pushed, where a symlink may point
(`pushrules`, shared with `dockyard deploy`), what its limits are."""

import pytest

from dockyard.controller import gitstore, prereceive, pushrules
from dockyard.errors import InvalidInput

OLD = "1" * 40
NEW = "2" * 40


def test_pushing_main_is_allowed() -> None:
    prereceive.check_ref(OLD, NEW, "refs/heads/main")


def test_the_first_push_creates_main() -> None:
    prereceive.check_ref(prereceive.ZERO, NEW, gitstore.BRANCH)


@pytest.mark.parametrize(
    "ref", ["refs/heads/feature", "refs/tags/v1", "refs/heads/main2", "main", "refs/notes/commits"]
)
def test_any_other_ref_is_refused(ref: str) -> None:
    with pytest.raises(InvalidInput, match=f"only refs/heads/main can be pushed, not {ref}"):
        prereceive.check_ref(OLD, NEW, ref)


def test_deleting_main_is_refused() -> None:
    with pytest.raises(InvalidInput, match="deleting the deployed branch"):
        prereceive.check_ref(OLD, prereceive.ZERO, gitstore.BRANCH)


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("code/current.py", "pipelines/v2.py"),
        ("code/pipelines/latest.py", "../shared/common.py"),
        ("code/a/b/c.py", "../../x/./y.py"),
        ("config/prod.secrets.toml", "secrets.toml"),
    ],
)
def test_links_inside_their_top_level_folder_are_allowed(path: str, target: str) -> None:
    pushrules.check_link(path, target)


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("code/passwd", "/etc/passwd"),
        ("code/up.py", "../../outside.py"),
        ("code/a/b.py", "../../../etc/hosts"),
        ("code/secrets.toml", "../config/secrets.toml"),  # code may not read config this way
        ("config/code.py", "../code/x.py"),
        ("code/self", "."),
        ("code/a/parent", ".."),
        ("code/tricky", "a/../../code2/x.py"),
    ],
)
def test_links_leaving_their_top_level_folder_are_refused(path: str, target: str) -> None:
    with pytest.raises(InvalidInput, match="points outside the workspace") as err:
        pushrules.check_link(path, target)

    assert repr(path) in err.value.message
    assert target in err.value.message


def test_a_top_level_link_is_refused() -> None:
    with pytest.raises(InvalidInput, match="points outside the workspace"):
        pushrules.check_link("manifest.yaml", "code/manifest.yaml")


def test_the_push_limit_defaults_to_four_workspaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_MAX_WORKSPACE_BYTES", "1000")
    monkeypatch.delenv("DOCKYARD_MAX_PUSH_BYTES", raising=False)
    assert prereceive.Limits.from_env() == prereceive.Limits(1000, 4000)
    monkeypatch.setenv("DOCKYARD_MAX_PUSH_BYTES", "1500")
    assert prereceive.Limits.from_env() == prereceive.Limits(1000, 1500)


def test_git_s_input_is_read_as_bytes() -> None:
    raw = f"{OLD} {NEW} refs/heads/main\n{OLD} {NEW} refs/heads/caf\xe9\n".encode("latin-1")

    updates = prereceive.read_updates(raw)

    assert updates[0] == (OLD, NEW, "refs/heads/main")
    with pytest.raises(InvalidInput, match="only refs/heads/main can be pushed"):
        prereceive.check_ref(*updates[1])
