"""The `/git` route as a hostile client sees it: which workspaces exist, which role a request
needs, which paths it serves, and how big a push body may be (docs/security.md, "Pushes:
every commit checked")."""

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dockyard.controller import gitstore
from tests.conftest import Server, make_server
from tests.integration.helpers import Committer
from tests.security.pushing import (
    Remote,
    blob_oid,
    good_files,
    pack_of,
    pkt,
    raw_request,
    status_of,
    workspace_name,
)

PUSH_LIMIT = 1_000_000  # DOCKYARD_MAX_PUSH_BYTES of this module's server
ADVERTISE = "/info/refs?service="


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = make_server(
        tmp_path_factory.mktemp("git-http"), DOCKYARD_MAX_PUSH_BYTES=str(PUSH_LIMIT)
    ).start()
    yield server
    server.stop()


@pytest.fixture
def remote(srv: Server, tmp_path: Path, request: pytest.FixtureRequest) -> Remote:
    return Remote.create(srv, workspace_name(request), tmp_path)


def test_a_scoped_token_cannot_tell_which_workspaces_exist(
    srv: Server, remote: Remote, tmp_path: Path
) -> None:
    other = Remote.create(srv, remote.name + "-other", tmp_path)
    token = remote.token("deploy", remote.name)

    for service in ("git-upload-pack", "git-receive-pack"):
        existing = remote.get(f"/git/{other.name}.git{ADVERTISE}{service}", token=token)
        missing = remote.get(f"/git/{other.name}-none.git{ADVERTISE}{service}", token=token)
        assert existing.status_code in (403, 404)
        assert (existing.status_code, existing.text) == (missing.status_code, missing.text)
        post = [
            httpx.post(
                f"{srv.url}/git/{name}.git/{service}",
                headers={"Authorization": f"Bearer {token}"},
                content=b"0000",
            )
            for name in (other.name, other.name + "-none")
        ]
        assert (post[0].status_code, post[0].text) == (post[1].status_code, post[1].text)
    # its own workspace answers
    assert remote.get(f"/git/{remote.name}.git{ADVERTISE}git-receive-pack", token=token).is_success


@pytest.mark.parametrize(
    "query",
    [
        "service=git%2Dreceive%2Dpack",
        "service=%67it-receive-pack",
        "service=git-receive-pack%00",
        "service=git-upload-pack&service=git-receive-pack",
        "service=git-receive-pack&service=git-upload-pack",
    ],
)
def test_an_encoded_service_does_not_bypass_the_role_check(remote: Remote, query: str) -> None:
    reader = remote.token("read", remote.name)

    response = remote.get(f"/git/{remote.name}.git/info/refs?{query}", token=reader)

    assert response.status_code in (400, 403), response.text
    assert "report-status" not in response.text  # no receive-pack advertisement
    # a read token fetches, a deploy token may push
    fetch = remote.get(f"/git/{remote.name}.git{ADVERTISE}git-upload-pack", token=reader)
    assert fetch.status_code == 200
    assert fetch.headers["content-type"] == "application/x-git-upload-pack-advertisement"
    deployer = remote.token("deploy", remote.name)
    push = remote.get(f"/git/{remote.name}.git{ADVERTISE}git-receive-pack", token=deployer)
    assert push.status_code == 200 and "report-status" in push.text


@pytest.mark.parametrize(
    "path",
    [
        "/git/{ws}.git/../../dockyard.db",
        "/git/{ws}.git/..%2f..%2fdockyard.db",
        "/git/{ws}.git/objects/../../../dockyard.db",
        "/git/{ws}.git/../{ws}.git/HEAD",
        "/git/{ws}.git/info/refs%00?service=git-upload-pack",
        "/git/{ws}.git/%00",
        "/git/..%2f..%2fdockyard.db/info/refs",
        "/git/%2e%2e/%2e%2e/info/refs",
        # git's "dumb" protocol serves raw files (unreachable objects too): smart HTTP only
        "/git/{ws}.git/HEAD",
        "/git/{ws}.git/objects/info/packs",
        "/git/{ws}.git/config",
    ],
)
def test_a_path_outside_the_git_protocol_is_refused_cleanly(
    srv: Server, remote: Remote, path: str
) -> None:
    url = path.format(ws=remote.name)

    answer = raw_request(
        srv, f"GET {url} HTTP/1.1\nHost: x\nAuthorization: Bearer {srv.token}\nConnection: close\n"
    )

    assert status_of(answer) in (400, 404), answer[:300]
    assert b"SQLite" not in answer and b"[core]" not in answer
    assert b"internal error" not in answer


# --- item 6, the git part: bodies streamed and capped ----------------------------------------


def test_a_push_body_over_the_limit_is_refused_while_streaming(
    remote: Remote, tmp_path: Path
) -> None:
    # random data does not compress: the body git sends is over the limit
    noise = os.urandom(3 * PUSH_LIMIT)
    remote.commit({**good_files(), "code/noise.bin": noise})

    error = remote.push()

    assert "413" in error, error
    assert remote.head() is None
    assert not remote.has(blob_oid(noise))
    wait_for_no_leftovers(remote)
    # a push under the limit goes through
    again = Remote(remote.server, remote.name, Committer(gitstore.init_bare(tmp_path / "again")))
    again.commit({**good_files(), "code/noise.bin": noise[: PUSH_LIMIT // 2]})
    assert again.push() == ""


def wait_for_no_leftovers(remote: Remote) -> None:
    """An aborted receive-pack removes its quarantine as it exits; wait for that exit."""
    deadline = time.monotonic() + 60
    while remote.leftovers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert remote.leftovers() == []


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(
    srv: Server, remote: Remote
) -> None:
    head = (
        f"POST /git/{remote.name}.git/git-receive-pack HTTP/1.1\nHost: x\n"
        "Content-Type: application/x-git-receive-pack-request\n"
        f"Content-Length: {100 * PUSH_LIMIT}\nConnection: close\n"
    )

    anonymous = raw_request(srv, head, read_first=True)
    admitted = raw_request(srv, head + f"Authorization: Bearer {srv.token}\n", read_first=True)

    assert status_of(anonymous) == 401  # who it is comes before any byte of the body
    assert status_of(admitted) == 413
    assert b"DOCKYARD_MAX_PUSH_BYTES" in admitted


def test_a_push_cut_off_midway_leaves_nothing_behind(srv: Server, remote: Remote) -> None:
    sha = remote.commit({**good_files(), "code/noise.bin": os.urandom(PUSH_LIMIT // 2)})
    command = f"{'0' * 40} {sha} {gitstore.BRANCH}\0report-status\n".encode()
    body = pkt(command) + b"0000" + pack_of(remote, sha)
    head = (
        f"POST /git/{remote.name}.git/git-receive-pack HTTP/1.1\nHost: x\n"
        f"Authorization: Bearer {srv.token}\n"
        "Content-Type: application/x-git-receive-pack-request\n"
        f"Content-Length: {len(body)}\n"
    )
    port = int(srv.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body[: len(body) // 2])

    # the server notices, ends git's input, and git removes what it had received
    deadline = time.monotonic() + 60
    ended = (
        "git request ended early action=git_http reason=the client went away"
        f" workspace={remote.name}"
    )
    while ended not in srv.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ended in srv.log.read_text()
    wait_for_no_leftovers(remote)
    assert remote.head() is None
    assert remote.get("/healthz").status_code == 200
