"""One deploy parses and validates its manifest bytes once (`manifests.Checked`): the receive
hook's checks and the reconciler reuse that result only for the very blob it was made from;
any other manifest blob, e.g. a commit pushed from a laptop, is read and checked in full."""

import json
from pathlib import Path

import pygit2
import pytest

from dockyard.controller import gitsource, gitstore, manifests, planning, prereceive
from dockyard.controller import reconciler as reconciling
from dockyard.controller.gitstore import FileEntry
from dockyard.errors import InvalidInput
from tests.unit import samples

WHO = pygit2.Signature("test", "test@localhost")


def commit(repo: pygit2.Repository, manifest: bytes) -> str:
    files = {
        gitstore.MANIFEST: FileEntry(gitstore.MODE_FILE, manifest),
        gitstore.REQUIREMENTS: FileEntry(
            gitstore.MODE_FILE, json.dumps(samples.requirements()).encode()
        ),
        "code/__deployment__.py": FileEntry(gitstore.MODE_FILE, b"def hello(): ...\n"),
    }
    tree = gitstore.write_tree(repo, files)
    return str(repo.create_commit(None, WHO, WHO, "deploy\n", tree, []))


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    return pygit2.init_repository(str(tmp_path / "ws.git"), bare=True)


GOOD = manifests.dump_yaml(samples.manifest(samples.HELLO)).encode()


def test_the_blob_id_is_git_s() -> None:
    assert manifests.blob_id(GOOD) == str(pygit2.hash(GOOD))


def test_the_hook_reuses_what_was_checked_for_that_very_blob(repo: pygit2.Repository) -> None:
    checked = manifests.checked(GOOD)
    sha = commit(repo, GOOD)

    assert prereceive.check_contents(repo, sha, None, checked) is checked
    assert reconciling._manifest(repo, sha, checked) is checked.manifest


def test_a_commit_whose_manifest_differs_from_what_was_checked_is_checked_in_full(
    repo: pygit2.Repository,
) -> None:
    checked = manifests.checked(GOOD)
    bad = samples.manifest(samples.HELLO)
    bad["jobs"][0]["require"] = {"timezone": "Mars/Olympus"}
    sha = commit(repo, manifests.dump_yaml(bad).encode())

    with pytest.raises(InvalidInput, match="timezone 'Mars/Olympus' is not an IANA name"):
        prereceive.check_contents(repo, sha, None, checked)


def test_a_differing_but_valid_manifest_is_parsed_from_its_own_bytes(
    repo: pygit2.Repository,
) -> None:
    checked = manifests.checked(GOOD)
    other = samples.manifest(samples.HELLO)
    other["description"] = "pushed from a laptop"
    sha = commit(repo, manifests.dump_yaml(other).encode())

    found = prereceive.check_contents(repo, sha, None, checked)
    assert found is not checked
    assert found.manifest["description"] == "pushed from a laptop"
    assert found.blob == str(gitstore.commit_at(repo, sha).tree[gitstore.MANIFEST].id)
    assert reconciling._manifest(repo, sha, checked)["description"] == "pushed from a laptop"


def test_without_a_checked_manifest_the_hook_checks_in_full(repo: pygit2.Repository) -> None:
    sha = commit(repo, b"jobs: [1, 2]\n")

    with pytest.raises(InvalidInput, match="`jobs` must be a list of jobs"):
        prereceive.check_contents(repo, sha, None)


def test_the_walk_skips_the_yaml_scan_only_for_a_checked_blob(repo: pygit2.Repository) -> None:
    aliased = b"jobs: &a []\nother: *a\n"
    sha = commit(repo, aliased)
    limits = prereceive.Limits(10_000_000, 40_000_000)
    tip = gitstore.commit_at(repo, sha)

    with pytest.raises(InvalidInput, match="anchor or alias"):
        prereceive.check_history(
            prereceive.Walk(repo, limits, [], {manifests.blob_id(GOOD)}), [tip]
        )
    prereceive.check_history(prereceive.Walk(repo, limits, [], {manifests.blob_id(aliased)}), [tip])


def test_a_schema_check_carries_over_only_to_the_same_json_value() -> None:
    valid = samples.manifest(samples.HELLO)
    manifests.validate_schema(valid)
    bad = samples.manifest(samples.HELLO)
    bad["jobs"][0]["require"] = {"timezone": "Mars/Olympus"}

    with pytest.raises(InvalidInput, match="not an IANA name"):
        manifests.checked(manifests.dump_yaml(bad).encode(), valid)
    assert manifests.checked(GOOD, valid).manifest == valid


def test_a_plan_against_the_job_rows_is_the_plan_against_the_deployed_manifest(
    repo: pygit2.Repository,
) -> None:
    deployed = samples.manifest(samples.HELLO, samples.SLEEPER)
    head = commit(repo, manifests.dump_yaml(deployed).encode())
    new = samples.manifest(samples.HELLO, samples.AFTER_HELLO)
    new["jobs"][0]["expose"]["tags"] = ["slow"]
    rows = [samples.job(samples.HELLO), samples.job(samples.SLEEPER)]

    against = gitsource._planned_against(repo, head, rows, new)

    assert against == {"jobs": rows}  # HEAD's manifest was not parsed
    assert planning.plan(against, new) == planning.plan(deployed, new)
    assert planning.plan(against, new).summary() == "1 added, 1 updated, 1 archived"


def test_no_job_change_or_no_reconciled_rows_reads_the_deployed_manifest(
    repo: pygit2.Repository,
) -> None:
    deployed = samples.manifest(samples.HELLO)
    head = commit(repo, manifests.dump_yaml(deployed).encode())
    rows = [samples.job(samples.HELLO)]

    # unchanged jobs: HEAD's manifest itself, so an equal manifest keeps HEAD's blob
    assert gitsource._planned_against(repo, head, rows, samples.manifest(samples.HELLO)) == deployed
    other = samples.manifest(samples.HELLO, samples.SLEEPER)
    assert gitsource._planned_against(repo, head, None, other) == deployed
