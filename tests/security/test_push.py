"""Pushes: every pushed commit and every pushed object is checked, not only the tip
(docs/security.md, "Pushes: every commit checked").

The attacks are hand-made commits pushed with the stock git client (or git's protocol by
hand) to a real server, as anyone with a deploy token can; each test also pushes the
ordinary version of the same thing and sees it accepted.
"""

import base64
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pygit2
import pytest

from dockyard.cli import gitpush
from dockyard.cli.sealing import Key, seal
from dockyard.controller import gitstore, manifests
from dockyard.controller.gitstore import FileEntry
from dockyard.errors import Conflict
from tests.conftest import Cli, Server, make_server
from tests.integration.helpers import Committer
from tests.security.pushing import (
    Files,
    Remote,
    blob_oid,
    good_files,
    link,
    nest,
    pack_of,
    raw_commit,
    receive_pack,
    rejection,
    workspace_name,
)
from tests.unit import samples
from tests.unit.samples import HELLO

LIMIT = 200_000  # DOCKYARD_MAX_WORKSPACE_BYTES of this module's server
PUSH_LIMIT = 1_000_000  # DOCKYARD_MAX_PUSH_BYTES
ZERO = "0" * 40


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = make_server(
        tmp_path_factory.mktemp("push"),
        DOCKYARD_MAX_WORKSPACE_BYTES=str(LIMIT),
        DOCKYARD_MAX_PUSH_BYTES=str(PUSH_LIMIT),
    ).start()
    yield server
    server.stop()


@pytest.fixture
def remote(srv: Server, tmp_path: Path, request: pytest.FixtureRequest) -> Remote:
    return Remote.create(srv, workspace_name(request), tmp_path)


def fresh_client(remote: Remote, tmp_path: Path, name: str = "again") -> Remote:
    """The same workspace, pushed from a new client repository (history without the attack)."""
    return Remote(remote.server, remote.name, Committer(gitstore.init_bare(tmp_path / name)))


def accepted(remote: Remote, files: Files) -> str:
    sha = remote.commit(files)
    error = remote.push()
    assert error == "", error
    assert remote.head() == sha
    return sha


# --- item 4: every commit, every object -----------------------------------------------------


def test_plaintext_secret_in_an_earlier_commit_is_refused(remote: Remote, tmp_path: Path) -> None:
    leaked = b'[sources.api]\nkey = "hunter2-plaintext-in-history"\n'
    first = remote.commit({**good_files(), "config/prod.secrets.toml": leaked})
    remote.commit(good_files())  # removed again in the next commit

    reason = rejection(remote.push())

    assert reason.startswith(f"commit {first[:12]}"), reason
    assert "config/prod.secrets.toml" in reason and "in clear text" in reason
    assert "hunter2" not in reason
    assert remote.head() is None
    assert not remote.has(blob_oid(leaked))  # nothing a read token could fetch
    # ordinary use: the history with the secret sealed for the workspace key is accepted
    key = remote.get(f"/api/v1/workspaces/{remote.name}/key", params={"purpose": "deploy"}).json()
    sealed = seal(
        {"config/prod.secrets.toml": FileEntry(gitstore.MODE_FILE, leaked)},
        Key(key["public_key"], key["key_id"], base64.b64decode(key["fingerprint_key"])),
    )["config/prod.secrets.toml"]
    again = fresh_client(remote, tmp_path)
    again.commit({**good_files(), "config/prod.secrets.toml": sealed})
    accepted(again, good_files())


def test_big_blob_in_an_earlier_commit_is_refused(remote: Remote, tmp_path: Path) -> None:
    big = pygit2.hash(b"").raw * (LIMIT // 20 + 500)  # over the workspace limit on its own
    first = remote.commit({**good_files(), "code/data.bin": big})
    remote.commit(good_files())

    reason = rejection(remote.push())

    assert reason.startswith(f"commit {first[:12]}"), reason
    assert f"over the limit of {LIMIT}" in reason
    assert remote.head() is None
    assert not remote.has(blob_oid(big))
    accepted(fresh_client(remote, tmp_path), {**good_files(), "code/data.bin": big[: LIMIT // 2]})


def test_forbidden_path_in_an_earlier_commit_is_refused(remote: Remote) -> None:
    first = remote.commit({**good_files(), "notes.txt": b"not part of a deployment\n"})
    remote.commit(good_files())

    reason = rejection(remote.push())

    assert reason.startswith(f"commit {first[:12]}"), reason
    assert "unexpected path 'notes.txt'" in reason
    assert remote.head() is None


def test_many_commits_of_new_content_are_refused_past_the_push_limit(
    remote: Remote, tmp_path: Path
) -> None:
    # each commit is well within the workspace limit and compresses to almost nothing on
    # the wire, but together they add more file content than one push may
    def version(i: int) -> Files:
        return {**good_files(), "code/data.txt": b"%d\n" % i + b"x" * (LIMIT // 2)}

    for i in range(PUSH_LIMIT // (LIMIT // 2) + 2):
        remote.commit(version(i))

    reason = rejection(remote.push())

    assert "new content" in reason and f"over the limit of {PUSH_LIMIT}" in reason, reason
    assert "DOCKYARD_MAX_PUSH_BYTES" in reason
    assert remote.head() is None
    again = fresh_client(remote, tmp_path)
    for i in range(3):
        again.commit(version(i))
    assert again.push() == ""


def test_a_thousand_small_commits_are_accepted(remote: Remote) -> None:
    files = good_files()
    for i in range(1000):
        remote.commit({**files, "code/counter.py": b"N = %d\n" % i})

    assert remote.push() == ""
    assert remote.head() == remote.client.shas[-1]


def test_an_object_no_pushed_commit_uses_is_refused(remote: Remote) -> None:
    sha = remote.commit(good_files())
    stowaway = b"a blob no commit points at, fetched later by its id\n"
    oid = str(remote.client.repo.create_blob(stowaway))

    status, report, messages = receive_pack(remote, ZERO, sha, pack_of(remote, sha, oid))

    assert status == 200
    assert "ng refs/heads/main" in report, report
    assert "dockyard: push rejected:" in messages and "no pushed commit uses" in messages
    assert remote.head() is None
    assert not remote.has(oid)
    # the same push without the stowaway is accepted
    status, report, messages = receive_pack(remote, ZERO, sha, pack_of(remote, sha))
    assert status == 200 and "ok refs/heads/main" in report, (report, messages)
    assert remote.head() == sha


# --- item 5: YAML aliases ---------------------------------------------------------------------


def alias_bomb(levels: int = 6, width: int = 8) -> str:
    """YAML that expands to width**levels strings: the "billion laughs"."""
    text = "&l0 [" + ", ".join(['"lol"'] * width) + "]"
    for k in range(1, levels):
        text = f"&l{k} [{text}, " + ", ".join([f"*l{k - 1}"] * (width - 1)) + "]"
    return text


def bomb_manifest() -> bytes:
    manifest = samples.manifest(HELLO)
    manifest["jobs"][0]["inputs"] = {"type": "object", "examples": "BOMB"}
    return (
        manifests.dump_yaml(manifest)
        .replace("examples: BOMB", f"examples: {alias_bomb()}")
        .encode()
    )


def test_yaml_alias_bomb_in_the_manifest_is_refused(remote: Remote, tmp_path: Path) -> None:
    remote.commit({**good_files(), gitstore.MANIFEST: bomb_manifest()})

    reason = rejection(remote.push())

    assert "manifest.yaml" in reason and "alias" in reason, reason
    assert remote.head() is None
    accepted(fresh_client(remote, tmp_path), good_files())


def test_a_yaml_alias_bomb_accepted_before_the_fix_fails_cleanly_when_read(
    remote: Remote,
) -> None:
    # what a server before the fix accepted: written straight into its repository
    server_repo = Committer(gitstore.open_repo(remote.path))
    good = server_repo.commit(Committer.entries(good_files()))
    ws = f"/api/v1/workspaces/{remote.name}"
    assert remote.server.api("POST", f"{ws}/reconcile").status_code == 200
    bomb = server_repo.commit(
        Committer.entries({**good_files(), gitstore.MANIFEST: bomb_manifest()})
    )

    reconciled = remote.server.api("POST", f"{ws}/reconcile")
    info = remote.get(f"{ws}/deployments/{bomb}")
    page = remote.get(f"/ui/w/{remote.name}/deployments", params={"old": good, "new": bomb})

    for response in (reconciled, info):
        assert 400 <= response.status_code < 500, response.text
        message = response.json()["error"]
        assert "alias" in message and "\n" not in message and len(message) < 400
    assert 400 <= page.status_code < 500 and "alias" in page.text
    assert len(page.content) < 100_000
    # the server keeps serving, this workspace included
    assert remote.get("/healthz").status_code == 200
    assert remote.get(ws).json()["head_sha"] == bomb
    assert remote.get(f"{ws}/deployments").status_code == 200


# --- item 11: configuration is validated like secrets ----------------------------------------


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (b'[jobs]\ngreeting = "unterminated\n', "invalid TOML"),
        (b'[jobs]\ngreeting = "caf\xe9"\n', "not UTF-8"),
    ],
    ids=["malformed", "latin-1"],
)
def test_a_broken_config_toml_pushed_by_hand_is_refused(
    remote: Remote, tmp_path: Path, config: bytes, problem: str
) -> None:
    remote.commit({**good_files(), "config/config.toml": config})

    reason = rejection(remote.push())

    assert reason.startswith("config/config.toml"), reason
    assert problem in reason and "line 2" in reason
    assert remote.head() is None
    accepted(fresh_client(remote, tmp_path), good_files())


# --- item 13: paths and links ------------------------------------------------------------------


def test_a_symlink_chain_through_a_link_to_dot_is_refused(remote: Remote, tmp_path: Path) -> None:
    # `here -> .` stays inside, and so does `x`, read as text; followed on disk, each `here`
    # stays put while each `..` climbs, and `x` leaves the checkout
    files = {
        **good_files(),
        "code/a/here": link("."),
        "code/a/x": link("here/here/../../../etc/passwd"),
    }
    remote.commit(files)

    reason = rejection(remote.push())

    assert "symlink 'code/a/x'" in reason, reason
    assert remote.head() is None
    del files["code/a/x"]  # a link to its own folder is harmless on its own
    accepted(fresh_client(remote, tmp_path), {**files, "code/a/y": link("here/y.py")})


@pytest.mark.parametrize(
    "path",
    [b"code/.git/hooks/post-checkout", b"code/sub/.git", b"code/.GIT/config", b"config/.git/x"],
)
def test_git_metadata_inside_the_workspace_is_refused(remote: Remote, path: bytes) -> None:
    tree = nest(good_files())
    *dirs, leaf = path.split(b"/")
    node = tree
    for part in dirs:
        node = node.setdefault(part, {})  # type: ignore[assignment]
    node[leaf] = FileEntry(gitstore.MODE_EXEC, b"#!/bin/sh\necho pwned\n")
    raw_commit(remote, tree)

    reason = rejection(remote.push())

    assert ".git" in reason.lower() and path.decode().split("/.")[0] in reason, reason
    assert remote.head() is None


def test_a_path_that_is_not_utf8_is_refused_cleanly(remote: Remote) -> None:
    tree = nest(good_files())
    tree[b"code"][b"caf\xe9.py"] = b"print('latin-1 name')\n"  # type: ignore[index]
    raw_commit(remote, tree)

    error = remote.push()
    reason = rejection(error)

    assert "not UTF-8" in reason and "caf" in reason, reason
    assert remote.head() is None


def test_a_job_whose_entry_point_is_not_in_the_commit_is_refused(
    remote: Remote, tmp_path: Path
) -> None:
    files = good_files()
    del files["code/__deployment__.py"], files["code/helpers/latest.py"]
    remote.commit({**files, "code/other.py": b"x = 1\n"})

    reason = rejection(remote.push())

    assert HELLO in reason and "code/__deployment__.py" in reason, reason
    assert remote.head() is None
    # a package module counts, and dlt's own jobs (the dashboard) run from the environment
    manifest = samples.manifest(HELLO, samples.DASHBOARD)
    manifest["jobs"][0]["entry_point"]["module"] = "pipelines.hello"
    ok = {
        **files,
        gitstore.MANIFEST: manifests.dump_yaml(manifest).encode(),
        "code/pipelines/hello/__init__.py": b"",
    }
    accepted(fresh_client(remote, tmp_path), ok)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (link("config"), "'code' must be a folder"),
        (FileEntry(gitstore.MODE_FILE, b"code"), "'code' must be a folder"),
    ],
    ids=["symlink", "file"],
)
def test_a_top_level_code_that_is_not_a_folder_is_refused(
    remote: Remote, entry: FileEntry, expected: str
) -> None:
    tree = nest(good_files())
    tree[b"code"] = entry
    raw_commit(remote, tree)

    reason = rejection(remote.push())

    assert expected in reason, reason
    assert remote.head() is None


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (b'[jobs.__deployment__]\ngreeting = "unterminated\n', "invalid TOML"),
        (b'[jobs.__deployment__]\ngreeting = "gr\xfc\xdf dich"\n', "not UTF-8"),
    ],
    ids=["malformed", "latin-1"],
)
def test_a_broken_config_toml_is_refused_by_deploy(
    cli: Cli, basic_ws: Path, config: bytes, problem: str
) -> None:
    cli.run("deploy", cwd=basic_ws)
    head = cli.json("info")["head_sha"]
    (basic_ws / ".dlt" / "config.toml").write_bytes(config)

    for command in (["deploy"], ["deploy", "--dry-run"], ["configuration", "sync"]):
        error = cli.fails(*command, cwd=basic_ws)
        assert ".dlt/config.toml" in error and problem in error and "line 2" in error, error
        assert error.startswith("error: ")
    assert cli.json("info")["head_sha"] == head
    (basic_ws / ".dlt" / "config.toml").write_text('[jobs.__deployment__]\ngreeting = "fixed"\n')
    cli.run("deploy", cwd=basic_ws)
    assert cli.json("info")["head_sha"] != head


# --- item 13: deploys that race or lose their answer ------------------------------------------


def test_a_deploy_that_lost_the_race_is_told_to_deploy_again(remote: Remote) -> None:
    base = accepted(remote, good_files())
    mine = remote.commit({**good_files(), "code/mine.py": b"x = 1\n"})
    # another deploy lands after this client saw `base` and before its push is applied
    server_side = Committer(gitstore.open_repo(remote.path))
    theirs = server_side.commit(Committer.entries({**good_files(), "code/theirs.py": b"y = 2\n"}))

    status, report, messages = receive_pack(remote, base, mine, pack_of(remote, mine, exclude=base))

    assert status == 200 and "ng refs/heads/main" in report, report
    assert "another deploy landed first; run deploy again" in messages, messages
    assert remote.head() == theirs


def test_a_deploy_that_landed_before_the_server_crashed_is_reported_as_landed(
    tmp_path: Path, cache_home: Path, basic_ws: Path
) -> None:
    (tmp_path / "srv").mkdir()
    server = make_server(tmp_path / "srv").start()
    try:
        cli = Cli(server, cache_home, tmp_path / "config", "crashy")
        cli.run("deploy", cwd=basic_ws)
        before = cli.json("deployment", "list")
        (basic_ws / "extra.py").write_text("VALUE = 1\n")
        # the server dies the moment the branch moved, before git's report reaches the client
        hook = server.data_dir / "repos" / "crashy.git" / "hooks" / "reference-transaction"
        assert server.proc is not None
        hook.write_text(f'#!/bin/sh\n[ "$1" = committed ] && kill -9 {server.proc.pid}\nexit 0\n')
        hook.chmod(0o755)
        deploy = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "deploy"],
            cwd=basic_ws,
            env=cli.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        server.proc.wait(timeout=300)
        server.proc = None
        hook.unlink()
        server.start()  # back, as a supervisor would restart it

        _out, err = deploy.communicate(timeout=300)

        assert deploy.returncode == 0, err
        assert "landed" in err, err
        after = cli.json("deployment", "list")
        assert len(after) == len(before) + 1  # exactly one new deploy, not two
        assert cli.json("info")["head_sha"] == after[0]["version"]
    finally:
        server.stop()


def test_concurrent_deploys_all_but_one_are_told_to_deploy_again(
    remote: Remote, tmp_path: Path
) -> None:
    base = accepted(remote, good_files())
    mirrors = []
    for i in range(4):
        repo = pygit2.init_repository(str(tmp_path / f"mirror{i}.git"), bare=True)
        repo.remotes.create("origin", remote.url, "+refs/heads/main:" + gitpush.REMOTE_MAIN)
        mirror = gitpush.Mirror(repo, remote.url, remote.server.token)
        assert mirror.fetch() == base
        files = Committer.entries({**good_files(), f"code/deploy_{i}.py": b"x = %d\n" % i})
        commit = mirror.commit(files, base, f"deploy {i}")
        assert commit is not None
        mirrors.append((mirror, commit))
    start = threading.Barrier(len(mirrors))

    def push(mirror: gitpush.Mirror, sha: str) -> str:
        start.wait()
        try:
            mirror.push(sha)
        except Conflict as exc:
            return exc.message
        return "landed"

    with ThreadPoolExecutor(len(mirrors)) as pool:
        outcomes = list(pool.map(lambda m: push(*m), mirrors))

    # however the race went (git's fast-forward check, the hook's, the ref lock), one deploy
    # landed and every other one is told the same thing
    assert sorted(outcomes) == [gitpush.RACE] * 3 + ["landed"], outcomes
    assert remote.head() == mirrors[outcomes.index("landed")][1]
