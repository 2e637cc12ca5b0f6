"""The proxy's rules for what crosses it, as pure functions: paths, headers, redirects, cookies.

Words used here: the *mount* is the prefix the client sees (`/apps/<ws>/<app>` or
`/p/<token>`); the *base path* is the prefix the app itself serves under: the mount it was
started with for launchers that honour `run_args.base_path` (marimo, streamlit), else `""`
(the app serves at `/` and the proxy strips the prefix).
"""

from collections.abc import Iterable
from urllib.parse import urlsplit

Headers = list[tuple[str, str]]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# never passed to an app: dockyard's own credentials, and what the proxy sets itself
NOT_FORWARDED = frozenset({"host", "authorization"}) | HOP_BY_HOP
WEBSOCKET_OWN = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
LOOPBACK = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::1"})  # noqa: S104


def is_safe(path: str) -> bool:
    """No `.` or `..` segment (after percent-decoding): a request never names a path outside
    the app it was sent to, not even to the app itself."""
    return not any(segment in (".", "..") for segment in path.split("/"))


def upstream_path(rest: str, base_path: str) -> str:
    """`<mount>/<rest>` on the client's side is `<base path>/<rest>` on the app's port."""
    return f"{base_path}/{rest.lstrip('/')}"


def without_session_cookie(value: str, cookie_name: str) -> str:
    """The Cookie header without dockyard's session cookie (the app never sees it)."""
    kept = [
        part.strip()
        for part in value.split(";")
        if part.strip() and part.strip().partition("=")[0].strip() != cookie_name
    ]
    return "; ".join(kept)


def _connection_listed(headers: Iterable[tuple[str, str]]) -> set[str]:
    listed: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            listed |= {v.strip().lower() for v in value.split(",") if v.strip()}
    return listed


def request_headers(
    headers: Iterable[tuple[str, str]],
    cookie_name: str,
    forwarded: dict[str, str],
    websocket: bool = False,
) -> Headers:
    """Headers for the app: hop-by-hop ones, `Host`, `Authorization` and dockyard's session
    cookie dropped; `X-Forwarded-*` set from `forwarded` (For, Proto, Host, Prefix)."""
    pairs = list(headers)
    drop = NOT_FORWARDED | _connection_listed(pairs) | (WEBSOCKET_OWN if websocket else set())
    out: Headers = []
    for name, value in pairs:
        lower = name.lower()
        if lower in drop or lower.startswith("x-forwarded-"):
            continue
        if lower == "cookie":
            value = without_session_cookie(value, cookie_name)
            if not value:
                continue
        out.append((lower, value))
    out += [(f"x-forwarded-{k.lower()}", v) for k, v in forwarded.items()]
    return out


def rewrite_location(value: str, mount: str, base_path: str, port: int) -> str:
    """A redirect the app sends, as the client must follow it: the app's own origin
    (`http://127.0.0.1:<port>`, `localhost`, `0.0.0.0`) and its base path become the mount."""
    parts = urlsplit(value)
    if parts.scheme in ("http", "https"):
        if parts.hostname not in LOOPBACK or parts.port not in (port, None):
            return value  # somewhere else entirely
        value = parts.path or "/"
        value += f"?{parts.query}" if parts.query else ""
        value += f"#{parts.fragment}" if parts.fragment else ""
    elif parts.scheme or parts.netloc or not value.startswith("/"):
        return value  # relative, or another scheme: the client resolves it as it should
    return _remount(value, mount, base_path)


def _remount(path: str, mount: str, base_path: str) -> str:
    if not base_path:
        return mount + path
    if path == base_path or path.startswith((base_path + "/", base_path + "?", base_path + "#")):
        return mount + path[len(base_path) :]
    return path  # outside the app's own base path: not ours to move


def rewrite_set_cookie(value: str, mount: str, base_path: str, cookie_name: str) -> str | None:
    """The app's cookie scoped to the mount (`Path`), never to a loopback `Domain`; None for
    a cookie that would replace dockyard's own session cookie."""
    parts = [p.strip() for p in value.split(";")]
    if parts[0].partition("=")[0].strip() == cookie_name:
        return None
    out = [parts[0]]
    for attribute in parts[1:]:
        key, _, attr_value = attribute.partition("=")
        if key.strip().lower() == "path" and attr_value.startswith("/"):
            attribute = f"Path={_remount(attr_value, mount, base_path)}"
        elif key.strip().lower() == "domain" and attr_value.strip().lstrip(".") in LOOPBACK:
            continue
        out.append(attribute)
    return "; ".join(out)


def response_headers(
    headers: Iterable[tuple[str, str]], mount: str, base_path: str, port: int, cookie_name: str
) -> Headers:
    """The app's response headers for the client: hop-by-hop ones dropped, redirects and
    cookie paths moved under the mount."""
    pairs = list(headers)
    drop = HOP_BY_HOP | _connection_listed(pairs)
    out: Headers = []
    for name, value in pairs:
        lower = name.lower()
        if lower in drop:
            continue
        if lower == "location":
            value = rewrite_location(value, mount, base_path, port)
        elif lower == "set-cookie":
            rewritten = rewrite_set_cookie(value, mount, base_path, cookie_name)
            if rewritten is None:
                continue
            value = rewritten
        out.append((lower, value))
    return out
