"""Which git request a `/git` URL is, decided the way git http-backend decodes it."""

import pytest

from dockyard.errors import InvalidInput, NotFound
from dockyard.web.git_http import GitRequest, parse_request


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "info/refs", "service=git-upload-pack", GitRequest("git-upload-pack", True)),
        ("GET", "info/refs", "service=git-receive-pack", GitRequest("git-receive-pack", True)),
        # what git itself decodes: encoded, it is still a push and needs the deploy role
        ("GET", "info/refs", "service=git%2Dreceive%2Dpack", GitRequest("git-receive-pack", True)),
        ("GET", "info/refs", "service=%67it-receive-pack", GitRequest("git-receive-pack", True)),
        ("POST", "git-upload-pack", "", GitRequest("git-upload-pack", False)),
        ("POST", "git-receive-pack", "x=1", GitRequest("git-receive-pack", False)),
    ],
)
def test_the_smart_protocol_requests(
    method: str, path: str, query: str, expected: GitRequest
) -> None:
    assert parse_request(method, path, query) == expected


def test_the_role_and_what_the_cgi_is_given() -> None:
    push = parse_request("GET", "info/refs", "service=git%2Dreceive%2Dpack")

    assert push.role == "deploy"
    assert (push.path, push.query) == ("info/refs", "service=git-receive-pack")
    assert parse_request("POST", "git-upload-pack", "").role == "read"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "service=git-upload-pack&service=git-receive-pack",
        "service=git-receive-pack%00",
        "service=git-upload-archive",
        "service=git-upload-pack&x=1",
    ],
)
def test_an_ambiguous_or_unknown_service_is_refused(query: str) -> None:
    with pytest.raises(InvalidInput, match="only git's smart protocol"):
        parse_request("GET", "info/refs", query)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "HEAD"),
        ("GET", "objects/info/packs"),
        ("GET", "../../dockyard.db"),
        ("GET", "git-receive-pack"),
        ("POST", "info/refs"),
        ("POST", "git-receive-pack/"),
        ("POST", "../x.git/git-receive-pack"),
    ],
)
def test_anything_else_is_not_found(method: str, path: str) -> None:
    with pytest.raises(NotFound):
        parse_request(method, path, "")
