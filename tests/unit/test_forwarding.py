"""The proxy's rules for what crosses it: paths, headers, redirects and cookies."""

import pytest

from dockyard.web import forwarding

MOUNT = "/apps/ws/nb"
PUBLIC = "/p/dyp_abc"


@pytest.mark.parametrize(
    ("location", "mount", "base", "expected"),
    [
        # an app served at `/` (prefix stripped): its absolute paths move under the mount
        ("http://127.0.0.1:5000/x?y=1#f", MOUNT, "", f"{MOUNT}/x?y=1#f"),
        ("http://localhost:5000/", MOUNT, "", f"{MOUNT}/"),
        ("http://0.0.0.0:5000/mcp", MOUNT, "", f"{MOUNT}/mcp"),
        ("/login", MOUNT, "", f"{MOUNT}/login"),
        # an app that knows its base path: already right, or moved to a public link's mount
        ("/apps/ws/nb/", MOUNT, MOUNT, "/apps/ws/nb/"),
        ("http://127.0.0.1:5000/apps/ws/nb/x", PUBLIC, MOUNT, f"{PUBLIC}/x"),
        ("/apps/ws/nb", PUBLIC, MOUNT, PUBLIC),
        ("/elsewhere", PUBLIC, MOUNT, "/elsewhere"),
        # not the app's origin, or relative: untouched
        ("http://127.0.0.1:6000/x", MOUNT, "", "http://127.0.0.1:6000/x"),
        ("https://example.org/x", MOUNT, "", "https://example.org/x"),
        ("next/page", MOUNT, "", "next/page"),
        ("?page=2", MOUNT, "", "?page=2"),
    ],
)
def test_locations_follow_the_mount(location: str, mount: str, base: str, expected: str) -> None:
    assert forwarding.rewrite_location(location, mount, base, 5000) == expected


def test_request_headers_drop_credentials_hop_by_hop_and_the_session_cookie() -> None:
    headers = [
        ("Host", "dockyard:8765"),
        ("Authorization", "Bearer dy_secret"),
        ("Connection", "keep-alive, X-Private"),
        ("X-Private", "hop"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Cookie", "a=1; dockyard_session=1.2.3;b=2"),
        ("X-Forwarded-For", "spoofed"),
        ("Accept", "text/html"),
        ("Content-Length", "12"),
    ]
    forwarded = {"For": "10.0.0.1", "Proto": "http", "Host": "dockyard:8765", "Prefix": MOUNT}

    out = forwarding.request_headers(headers, "dockyard_session", forwarded)

    assert out == [
        ("cookie", "a=1; b=2"),
        ("accept", "text/html"),
        ("content-length", "12"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "dockyard:8765"),
        ("x-forwarded-prefix", MOUNT),
    ]


def test_a_cookie_header_with_only_the_session_is_dropped() -> None:
    out = forwarding.request_headers([("cookie", "dockyard_session=x")], "dockyard_session", {})

    assert out == []


def test_websocket_handshake_headers_are_the_clients_own() -> None:
    headers = [("Sec-WebSocket-Key", "k"), ("Sec-WebSocket-Protocol", "p"), ("Origin", "o")]

    out = forwarding.request_headers(headers, "dockyard_session", {}, websocket=True)

    assert out == [("origin", "o")]


def test_response_headers_rewrite_location_and_cookies() -> None:
    headers = [
        ("Location", "http://127.0.0.1:5000/next"),
        ("Set-Cookie", "s=1; Path=/; HttpOnly"),
        ("Set-Cookie", "t=2; Domain=localhost; Path=/api"),
        ("Set-Cookie", "dockyard_session=forged; Path=/"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Type", "text/plain"),
    ]

    out = forwarding.response_headers(headers, MOUNT, "", 5000, "dockyard_session")

    assert out == [
        ("location", f"{MOUNT}/next"),
        ("set-cookie", f"s=1; Path={MOUNT}/; HttpOnly"),
        ("set-cookie", f"t=2; Path={MOUNT}/api"),
        ("content-type", "text/plain"),
    ]


@pytest.mark.parametrize(
    ("path", "safe"),
    [("/apps/ws/nb/a/b", True), ("/apps/ws/nb/../x", False), ("/p/t/./x", False), ("/a..b", True)],
)
def test_dot_segments_are_not_safe(path: str, safe: bool) -> None:
    assert forwarding.is_safe(path) is safe


def test_upstream_path_puts_the_rest_under_the_base_path() -> None:
    assert forwarding.upstream_path("a/b", "") == "/a/b"
    assert forwarding.upstream_path("", MOUNT) == f"{MOUNT}/"
