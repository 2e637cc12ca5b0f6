"""gitstore against real bare pygit2 repositories: trees, reads, checkouts and versions."""

import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest

from dockyard.controller import gitstore
from dockyard.controller.gitstore import CONFIGURATION_PATHS, DEPLOYMENT_PATHS, FileEntry
from dockyard.errors import InvalidInput, NotFound
from tests.integration.helpers import START, Committer

MANIFEST = b"engine_version: 2\njobs: []\n"
REQUIREMENTS = b'{"dlt_version": {"name": "dlt", "extras": [], "version": "1.31.0"}}'

BASE: dict[str, bytes | FileEntry] = {
    "manifest.yaml": MANIFEST,
    "requirements.json": REQUIREMENTS,
    "code/__deployment__.py": b"import dlt\n",
    "code/pipelines/numbers.py": b"def numbers():\n    yield 1\n",
    "code/bin/run.sh": FileEntry(gitstore.MODE_EXEC, b"#!/bin/sh\necho run\n"),
    "code/latest.py": FileEntry(gitstore.MODE_LINK, b"pipelines/numbers.py"),
    "config/config.toml": b'[jobs]\ngreeting = "hi"\n',
    "config/prod.secrets.toml": b'[destination.duckdb]\ncredentials = "x.duckdb"\n',
}


def replaced(updates: dict[str, bytes | FileEntry]) -> dict[str, bytes | FileEntry]:
    """BASE with some files added or replaced."""
    return {**BASE, **updates}


NEW_CONFIG: dict[str, bytes | FileEntry] = {"config/config.toml": b'[jobs]\ngreeting = "hello"\n'}
NEW_CODE: dict[str, bytes | FileEntry] = {
    "code/pipelines/numbers.py": b"def numbers():\n    yield 2\n"
}


# repositories and trees -----------------------------------------------------------------------
def test_a_new_bare_repository_points_head_at_main_and_is_empty(tmp_path: Path) -> None:
    repo = gitstore.init_bare(tmp_path / "ws.git")

    assert repo.is_bare
    assert repo.references["HEAD"].target == gitstore.BRANCH
    assert gitstore.head_sha(repo) is None
    assert gitstore.history(repo, DEPLOYMENT_PATHS) == []
    assert repo.config.get_bool("receive.denyNonFastForwards")
    assert repo.config.get_bool("receive.denyDeletes")
    assert repo.config.get_bool("http.receivepack")


def test_open_repo_of_a_missing_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no repository at"):
        gitstore.open_repo(tmp_path / "nope.git")


def test_open_repo_reopens_what_init_bare_made(tmp_path: Path, committer: Committer) -> None:
    sha = committer.commit(BASE)

    reopened = gitstore.open_repo(Path(committer.repo.path))

    assert gitstore.head_sha(reopened) == sha


def test_commit_and_read_back_every_file(bare_repo: Any, committer: Committer) -> None:
    sha = committer.commit(BASE)

    assert gitstore.head_sha(bare_repo) == sha
    assert gitstore.read_file(bare_repo, sha, "manifest.yaml") == MANIFEST
    assert gitstore.read_file(bare_repo, sha, "code/pipelines/numbers.py") == (
        b"def numbers():\n    yield 1\n"
    )
    assert gitstore.read_file(bare_repo, sha, "code/latest.py") == b"pipelines/numbers.py"


def test_read_file_of_a_missing_path_or_a_folder_is_none(
    bare_repo: Any, committer: Committer
) -> None:
    sha = committer.commit(BASE)

    assert gitstore.read_file(bare_repo, sha, "code/missing.py") is None
    assert gitstore.read_file(bare_repo, sha, "code/pipelines") is None
    assert gitstore.read_file(bare_repo, sha, "nothing/here") is None


def test_versions_can_be_named_by_short_sha(bare_repo: Any, committer: Committer) -> None:
    sha = committer.commit(BASE)

    assert gitstore.read_file(bare_repo, sha[:12], "manifest.yaml") == MANIFEST
    assert str(gitstore.commit_at(bare_repo, sha[:12]).id) == sha


@pytest.mark.parametrize("sha", ["0" * 40, "deadbeef", "not-a-sha"])
def test_an_unknown_version_is_not_found(bare_repo: Any, committer: Committer, sha: str) -> None:
    committer.commit(BASE)

    with pytest.raises(NotFound, match="no version"):
        gitstore.read_file(bare_repo, sha, "manifest.yaml")


def test_the_tree_holds_exactly_the_given_files_and_modes(
    bare_repo: Any, committer: Committer
) -> None:
    sha = committer.commit(BASE)

    files = dict(gitstore.iter_files(bare_repo, sha, ""))

    assert sorted(files) == sorted(BASE)
    assert files["code/bin/run.sh"].mode == gitstore.MODE_EXEC
    assert files["code/latest.py"].mode == gitstore.MODE_LINK
    assert files["config/config.toml"] == FileEntry(
        gitstore.MODE_FILE, b'[jobs]\ngreeting = "hi"\n'
    )


def test_iter_files_below_a_prefix_is_relative_to_it(bare_repo: Any, committer: Committer) -> None:
    sha = committer.commit(BASE)

    code = dict(gitstore.iter_files(bare_repo, sha, gitstore.CODE))
    config = dict(gitstore.iter_files(bare_repo, sha, gitstore.CONFIG))

    assert sorted(code) == ["__deployment__.py", "bin/run.sh", "latest.py", "pipelines/numbers.py"]
    assert sorted(config) == ["config.toml", "prod.secrets.toml"]


def test_iter_files_of_a_missing_prefix_is_empty(bare_repo: Any, committer: Committer) -> None:
    sha = committer.commit({k: v for k, v in BASE.items() if not k.startswith("config/")})

    assert list(gitstore.iter_files(bare_repo, sha, gitstore.CONFIG)) == []


def test_identical_content_gives_an_identical_tree(bare_repo: Any) -> None:
    entries = Committer.entries(BASE)

    a = gitstore.write_tree(bare_repo, entries)
    b = gitstore.write_tree(bare_repo, dict(reversed(list(entries.items()))))
    c = gitstore.write_tree(bare_repo, Committer.entries(replaced(NEW_CODE)))

    assert a == b
    assert a != c


# checkout -------------------------------------------------------------------------------------
def test_checkout_writes_code_with_links_and_executable_bits(
    tmp_path: Path, bare_repo: Any, committer: Committer
) -> None:
    sha = committer.commit(BASE)
    dest = tmp_path / "checkouts" / sha

    gitstore.checkout(bare_repo, sha, gitstore.CODE, dest)

    found = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if not p.is_dir())
    assert found == ["__deployment__.py", "bin/run.sh", "latest.py", "pipelines/numbers.py"]
    assert (dest / "__deployment__.py").read_bytes() == b"import dlt\n"
    link = dest / "latest.py"
    assert link.is_symlink()
    assert os.readlink(link) == "pipelines/numbers.py"
    assert link.read_bytes() == b"def numbers():\n    yield 1\n"  # resolves inside the checkout
    script = (dest / "bin" / "run.sh").stat().st_mode
    assert script & stat.S_IXUSR and script & stat.S_IXGRP and script & stat.S_IXOTH
    plain = (dest / "pipelines" / "numbers.py").stat().st_mode
    assert not plain & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_checkout_refuses_an_existing_destination(
    tmp_path: Path, bare_repo: Any, committer: Committer
) -> None:
    sha = committer.commit(BASE)
    (tmp_path / "dest").mkdir()

    with pytest.raises(FileExistsError):
        gitstore.checkout(bare_repo, sha, gitstore.CODE, tmp_path / "dest")


# paths ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "../outside.py",
        "code/../../etc/passwd",
        "code/./x.py",
        "/etc/passwd",
        "code//x.py",
        "code/",
        "",
        "..",
    ],
)
def test_check_path_refuses_escaping_or_odd_paths(path: str) -> None:
    with pytest.raises(InvalidInput, match="escapes the workspace"):
        gitstore.check_path(path)


@pytest.mark.parametrize("path", ["manifest.yaml", "code/a/b/c.py", "code/..hidden", "config/.x"])
def test_check_path_accepts_plain_relative_paths(path: str) -> None:
    gitstore.check_path(path)


def test_write_tree_checks_every_path(bare_repo: Any) -> None:
    files = {
        "code/ok.py": FileEntry(gitstore.MODE_FILE, b""),
        "code/../x.py": FileEntry(gitstore.MODE_FILE, b""),
    }

    with pytest.raises(InvalidInput, match=r"'code/\.\./x\.py'"):
        gitstore.write_tree(bare_repo, files)


# versions -------------------------------------------------------------------------------------
def test_deployment_and_configuration_versions_move_independently(
    bare_repo: Any, committer: Committer
) -> None:
    first = committer.commit(BASE, "first deploy")
    config_only = committer.commit(replaced(NEW_CONFIG), "config")
    code_only = committer.commit(replaced({**NEW_CONFIG, **NEW_CODE}), "code")

    deployments = [v.sha for v in gitstore.history(bare_repo, DEPLOYMENT_PATHS)]
    configurations = [v.sha for v in gitstore.history(bare_repo, CONFIGURATION_PATHS)]

    assert deployments == [code_only, first]
    assert configurations == [config_only, first]
    assert gitstore.latest_version(bare_repo, first, DEPLOYMENT_PATHS) == first
    assert gitstore.latest_version(bare_repo, config_only, DEPLOYMENT_PATHS) == first
    assert gitstore.latest_version(bare_repo, config_only, CONFIGURATION_PATHS) == config_only
    assert gitstore.latest_version(bare_repo, code_only, DEPLOYMENT_PATHS) == code_only
    assert gitstore.latest_version(bare_repo, code_only, CONFIGURATION_PATHS) == config_only


@pytest.mark.parametrize("path", ["manifest.yaml", "requirements.json", "code/__deployment__.py"])
def test_each_deployment_path_makes_a_deployment_version(
    bare_repo: Any, committer: Committer, path: str
) -> None:
    committer.commit(BASE)
    files = dict(BASE)
    files[path] = b"changed\n"
    second = committer.commit(files)

    assert gitstore.latest_version(bare_repo, second, DEPLOYMENT_PATHS) == second
    assert gitstore.latest_version(bare_repo, second, CONFIGURATION_PATHS) == committer.shas[0]


def test_a_commit_without_changes_is_no_version(bare_repo: Any, committer: Committer) -> None:
    first = committer.commit(BASE)
    again = committer.commit(BASE, "redeploy of the same content")

    assert gitstore.latest_version(bare_repo, again, DEPLOYMENT_PATHS) == first
    assert gitstore.latest_version(bare_repo, again, CONFIGURATION_PATHS) == first
    assert [v.sha for v in gitstore.history(bare_repo, DEPLOYMENT_PATHS)] == [first]


def test_a_workspace_without_configuration_has_no_configuration_version(
    bare_repo: Any, committer: Committer
) -> None:
    sha = committer.commit({k: v for k, v in BASE.items() if not k.startswith("config/")})

    assert gitstore.latest_version(bare_repo, sha, CONFIGURATION_PATHS) is None
    assert gitstore.history(bare_repo, CONFIGURATION_PATHS) == []
    assert gitstore.latest_version(bare_repo, sha, DEPLOYMENT_PATHS) == sha


def test_removing_all_configuration_is_a_configuration_version(
    bare_repo: Any, committer: Committer
) -> None:
    first = committer.commit(BASE)
    removed = committer.commit({k: v for k, v in BASE.items() if not k.startswith("config/")})

    assert [v.sha for v in gitstore.history(bare_repo, CONFIGURATION_PATHS)] == [removed, first]
    assert gitstore.latest_version(bare_repo, removed, DEPLOYMENT_PATHS) == first


def test_history_carries_time_and_message(bare_repo: Any, committer: Committer) -> None:
    committer.commit(BASE, "deploy: 3 added\n\nlong body\n")

    (version,) = gitstore.history(bare_repo, DEPLOYMENT_PATHS)

    assert version.created_at == datetime.fromtimestamp(START + 60, tz=UTC)
    assert version.message == "deploy: 3 added\n\nlong body"
    assert version.as_dict() == {
        "version": version.sha,
        "created_at": "2026-03-04T10:01:00+00:00",
        "message": "deploy: 3 added\n\nlong body",
        "source_commit": None,
    }
    assert gitstore.version_info(bare_repo, version.sha) == version


def test_the_source_commit_is_the_last_trailer_of_the_message() -> None:
    sha = "a" * 40
    message = (
        f"deploy: 1 added\n\nadded: x\n\n"
        f"Source-Commit: acme/ws@{'b' * 40}\nSource-Commit: acme/ws@{sha}\n"
    )

    assert gitstore.source_commit(message) == f"acme/ws@{sha}"
    assert gitstore.source_commit("deploy: 1 added\n\nSource-Commit: acme/ws@short\n") is None
    assert gitstore.source_commit("deploy: no job changes\n") is None


def test_history_follows_first_parents_only(bare_repo: Any, committer: Committer) -> None:
    first = committer.commit(BASE)
    # a side commit that only a merge brings in
    side_tree = gitstore.write_tree(bare_repo, committer.entries(replaced({"code/side.py": b"x"})))
    sig = pygit2.Signature("t", "t@dockyard.invalid", START + 600, 0)
    side = bare_repo.create_commit(None, sig, sig, "side", side_tree, [first])
    merge = bare_repo.create_commit(gitstore.BRANCH, sig, sig, "merge", side_tree, [first, side])

    assert [v.sha for v in gitstore.history(bare_repo, DEPLOYMENT_PATHS)] == [str(merge), first]


# changed paths --------------------------------------------------------------------------------
def test_changed_paths_of_a_first_version_lists_every_file(
    bare_repo: Any, committer: Committer
) -> None:
    sha = committer.commit(BASE)

    assert gitstore.changed_paths(bare_repo, None, sha) == sorted(BASE)


def test_changed_paths_lists_added_removed_and_modified_files(
    bare_repo: Any, committer: Committer
) -> None:
    first = committer.commit(BASE)
    files = dict(BASE)
    del files["code/pipelines/numbers.py"]
    files["code/pipelines/letters.py"] = b"def letters():\n    yield 'a'\n"
    files["config/config.toml"] = b'[jobs]\ngreeting = "hello"\n'
    files["code/bin/run.sh"] = FileEntry(gitstore.MODE_FILE, b"#!/bin/sh\necho run\n")  # mode
    second = committer.commit(files)

    assert gitstore.changed_paths(bare_repo, first, second) == [
        "code/bin/run.sh",
        "code/pipelines/letters.py",
        "code/pipelines/numbers.py",
        "config/config.toml",
    ]
    assert gitstore.changed_paths(bare_repo, second, second) == []
