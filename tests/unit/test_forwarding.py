"""The proxy's rules for what crosses it: paths, headers, redirects, cookies, and which
forwarded headers to believe."""

import pytest

from dockyard.web import forwarding

MOUNT = "/apps/ws/nb"  # the base path of a run started before apps had origins of their own
PUBLIC = "/p/dyp_abc"
HOST = "nb--ws.apps.localhost:8765"
OWN = ("dockyard_session", "dockyard_app")


@pytest.mark.parametrize(
    ("location", "mount", "base", "expected"),
    [
        # an app at `/` of its origin: its loopback address becomes a path there
        ("http://127.0.0.1:5000/x?y=1#f", "", "", "/x?y=1#f"),
        ("http://localhost:5000/", "", "", "/"),
        ("http://0.0.0.0:5000/mcp", "", "", "/mcp"),
        ("/login", "", "", "/login"),
        # under a public link's mount, its absolute paths move under the mount
        ("/login", PUBLIC, "", f"{PUBLIC}/login"),
        ("http://127.0.0.1:5000/", PUBLIC, "", f"{PUBLIC}/"),
        # a run that knows its old base path: moved to the mount the client sees
        ("/apps/ws/nb/", "", MOUNT, "/"),
        ("http://127.0.0.1:5000/apps/ws/nb/x", PUBLIC, MOUNT, f"{PUBLIC}/x"),
        ("/apps/ws/nb", PUBLIC, MOUNT, PUBLIC),
        ("/elsewhere", PUBLIC, MOUNT, "/elsewhere"),
        # the app's own public address, and relative ones: untouched
        (f"http://{HOST}/x", "", "", f"http://{HOST}/x"),
        (f"https://{HOST.upper()}/x", "", "", f"https://{HOST.upper()}/x"),
        ("next/page", "", "", "next/page"),
        ("?page=2", "", "", "?page=2"),
        ("#top", "", "", "#top"),
    ],
)
def test_locations_follow_the_mount(location: str, mount: str, base: str, expected: str) -> None:
    assert forwarding.rewrite_location(location, mount, base, 5000, HOST) == expected


@pytest.mark.parametrize(
    "location",
    [
        "//evil.example/x",
        "///evil.example/x",
        "/\\evil.example/x",
        "\\\\evil.example",
        "/\t/evil.example",
        " \n//evil.example",
        "http://evil.example/x",
        "https://evil.example",
        "HTTPS://EVIL.EXAMPLE",
        f"http://{HOST}@evil.example/",
        "http://127.0.0.1:6000/x",  # another service on the machine
        "http://127.0.0.1:99999/x",
        "javascript:alert(1)",
        "data:text/html,hi",
        "ftp://evil.example/",
    ],
)
def test_a_redirect_off_the_apps_origin_is_refused(location: str) -> None:
    with pytest.raises(forwarding.OffOrigin):
        forwarding.rewrite_location(location, "", "", 5000, HOST)


def test_a_refresh_header_is_a_redirect_too() -> None:
    assert forwarding.rewrite_refresh("0; url=/x", PUBLIC, "", 5000, HOST) == f"0; url={PUBLIC}/x"
    assert forwarding.rewrite_refresh("5", "", "", 5000, HOST) == "5"
    assert forwarding.rewrite_refresh("0;URL=//evil.example", "", "", 5000, HOST) is None


def test_request_headers_drop_credentials_hop_by_hop_and_the_session_cookie() -> None:
    headers = [
        ("Host", "dockyard:8765"),
        ("Authorization", "Bearer dy_secret"),
        ("Connection", "keep-alive, X-Private"),
        ("X-Private", "hop"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Cookie", "a=1; dockyard_session=1.2.3;b=2; dockyard_app=4.5.6.7"),
        ("X-Forwarded-For", "spoofed"),
        ("Accept", "text/html"),
        ("Content-Length", "12"),
    ]
    forwarded = {"For": "10.0.0.1", "Proto": "http", "Host": "dockyard:8765", "Prefix": MOUNT}

    out = forwarding.request_headers(headers, OWN, forwarded)

    assert out == [
        ("cookie", "a=1; b=2"),
        ("accept", "text/html"),
        ("content-length", "12"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "dockyard:8765"),
        ("x-forwarded-prefix", MOUNT),
    ]


def test_a_cookie_header_with_only_dockyards_cookies_is_dropped() -> None:
    cookie = [("cookie", "dockyard_session=x; dockyard_app=y")]

    assert forwarding.request_headers(cookie, OWN, {"Prefix": ""}) == []


def test_websocket_handshake_headers_are_the_clients_own() -> None:
    headers = [("Sec-WebSocket-Key", "k"), ("Sec-WebSocket-Protocol", "p"), ("Origin", "o")]

    out = forwarding.request_headers(headers, OWN, {}, websocket=True)

    assert out == [("origin", "o")]


def test_response_headers_rewrite_location_and_cookies() -> None:
    headers = [
        ("Location", "http://127.0.0.1:5000/next"),
        ("Set-Cookie", "s=1; Path=/; HttpOnly"),
        ("Set-Cookie", "t=2; Domain=apps.localhost; Path=/api"),
        ("Set-Cookie", "dockyard_session=forged; Path=/"),
        ("Set-Cookie", "dockyard_app=forged; Path=/"),
        ("Refresh", "1; url=http://127.0.0.1:5000/r"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Type", "text/plain"),
    ]
    where = forwarding.Mount(PUBLIC, "", 5000, HOST)

    out = forwarding.response_headers(headers, where, OWN)

    assert out == [
        ("location", f"{PUBLIC}/next"),
        ("set-cookie", f"s=1; Path={PUBLIC}/; HttpOnly"),
        ("set-cookie", f"t=2; Path={PUBLIC}/api"),  # no Domain: never for the neighbours
        ("refresh", f"1; url={PUBLIC}/r"),
        ("content-type", "text/plain"),
    ]


def test_response_headers_refuse_a_redirect_off_the_origin() -> None:
    where = forwarding.Mount("", "", 5000, HOST)
    with pytest.raises(forwarding.OffOrigin):
        forwarding.response_headers([("Location", "//evil.example")], where, OWN)
    assert forwarding.response_headers([("Refresh", "0; url=//evil")], where, OWN) == []


@pytest.mark.parametrize(
    ("path", "safe"),
    [("/apps/ws/nb/a/b", True), ("/apps/ws/nb/../x", False), ("/p/t/./x", False), ("/a..b", True)],
)
def test_dot_segments_are_not_safe(path: str, safe: bool) -> None:
    assert forwarding.is_safe(path) is safe


def test_upstream_path_puts_the_rest_under_the_base_path() -> None:
    assert forwarding.upstream_path("a/b", "") == "/a/b"
    assert forwarding.upstream_path("", MOUNT) == f"{MOUNT}/"


# forwarded headers: believed only from trusted proxies --------------------------------------
FORGED = {"host": HOST, "x-forwarded-for": "6.6.6.6", "x-forwarded-proto": "https"}
FORGED["x-forwarded-host"] = "evil.example"


def test_a_clients_forwarded_headers_count_for_nothing() -> None:
    for proxies in ((), forwarding.networks(("10.0.0.0/8",))):
        seen = forwarding.seen("127.0.0.1", "http", FORGED, proxies)
        assert seen == forwarding.Seen("127.0.0.1", "127.0.0.1", "http", HOST)


def test_a_trusted_proxys_forwarded_headers_are_believed() -> None:
    proxies = forwarding.networks(("10.0.0.5", "fd00::/64"))
    headers = {**FORGED, "x-forwarded-for": "1.2.3.4, 10.0.0.7, 10.0.0.5"}

    one = forwarding.seen("10.0.0.5", "http", headers, proxies)
    v6 = forwarding.seen("fd00::9", "http", {**FORGED, "x-forwarded-for": "1.2.3.4"}, proxies)

    # 10.0.0.7 is not trusted: it is the nearest client the chain can vouch for
    assert one == forwarding.Seen(
        "10.0.0.7", f"{headers['x-forwarded-for']}, 10.0.0.5", "https", "evil.example"
    )
    assert v6.client == "1.2.3.4" and v6.proto == "https"
    bare = forwarding.seen("10.0.0.5", "http", {"host": HOST}, proxies)
    assert bare == forwarding.Seen("10.0.0.5", "10.0.0.5", "http", HOST)


def test_a_bad_trusted_proxy_entry_is_named() -> None:
    with pytest.raises(ValueError, match="'not-an-ip' is not an IP address"):
        forwarding.networks(("10.0.0.1", "not-an-ip"))
