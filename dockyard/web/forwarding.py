"""The proxy's rules for what crosses it, as pure functions: paths, headers, redirects,
cookies, and which `X-Forwarded-*` headers to believe.

Words used here: the *mount* is the prefix the client sees on the app's own origin (`""` for
the app itself, `/p/<token>` for a public link); the *base path* is the prefix the app
itself serves under: `""` (at `/`), or for a run started before apps had origins of their
own, the `/apps/<ws>/<app>` it was given as `run_args.base_path`. The *host* is the app's
origin as the client sees it (`<app>--<ws>.apps.localhost:8765`).

An app decides where its redirects go, but not off its own origin: a `Location` (or
`Refresh`) to another host, scheme-relative (`//evil.example`) or disguised the way
browsers read it (`/\\evil.example`, tabs and newlines dropped) makes `OffOrigin`.
"""

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
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
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class OffOrigin(ValueError):
    """The app redirected somewhere outside its own origin."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def is_safe(path: str) -> bool:
    """No `.` or `..` segment (after percent-decoding): a request never names a path outside
    the app it was sent to, not even to the app itself."""
    return not any(segment in (".", "..") for segment in path.split("/"))


def upstream_path(rest: str, base_path: str) -> str:
    """`<mount>/<rest>` on the client's side is `<base path>/<rest>` on the app's port."""
    return f"{base_path}/{rest.lstrip('/')}"


def without_cookies(value: str, names: Iterable[str]) -> str:
    """The Cookie header without dockyard's own cookies (the app never sees them)."""
    drop = set(names)
    kept = [
        part.strip()
        for part in value.split(";")
        if part.strip() and part.strip().partition("=")[0].strip() not in drop
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
    cookie_names: Iterable[str],
    forwarded: dict[str, str],
    websocket: bool = False,
) -> Headers:
    """Headers for the app: hop-by-hop ones, `Host`, `Authorization` and dockyard's cookies
    dropped; `X-Forwarded-*` only as set from `forwarded` (For, Proto, Host, Prefix; an
    empty value is left out), never the client's own."""
    cookie_names = tuple(cookie_names)
    pairs = list(headers)
    drop = NOT_FORWARDED | _connection_listed(pairs) | (WEBSOCKET_OWN if websocket else set())
    out: Headers = []
    for name, value in pairs:
        lower = name.lower()
        if lower in drop or lower.startswith("x-forwarded-"):
            continue
        if lower == "cookie":
            value = without_cookies(value, cookie_names)
            if not value:
                continue
        out.append((lower, value))
    out += [(f"x-forwarded-{k.lower()}", v) for k, v in forwarded.items() if v]
    return out


def as_browsers_read(url: str) -> str:
    """A URL as a browser's parser takes it: C0 controls and spaces at either end and every
    tab and newline removed, `\\` read as `/`."""
    cleaned = url.strip("".join(chr(c) for c in range(33)))
    for char in "\t\n\r":
        cleaned = cleaned.replace(char, "")
    return cleaned.replace("\\", "/")


def rewrite_location(value: str, mount: str, base_path: str, port: int, host: str) -> str:
    """A redirect the app sends, as the client must follow it: the app's own loopback
    address (`http://127.0.0.1:<port>`, `localhost`, `0.0.0.0`) and its base path become the
    mount; a URL on `host` (the app's origin as the client sees it) and relative ones stay.
    Anywhere else, another scheme included, raises OffOrigin."""
    cleaned = as_browsers_read(value)
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc:
        try:
            own_port = parts.port
        except ValueError:
            raise OffOrigin(value) from None
        if parts.scheme not in ("", "http", "https"):
            raise OffOrigin(value)
        if parts.netloc.lower() == host.lower():
            return cleaned
        if parts.hostname not in LOOPBACK or own_port != port:
            raise OffOrigin(value)
        cleaned = parts.path or "/"
        cleaned += f"?{parts.query}" if parts.query else ""
        cleaned += f"#{parts.fragment}" if parts.fragment else ""
    if not cleaned.startswith("/"):
        return cleaned  # relative: the client resolves it against the page, as it should
    moved = _remount(cleaned, mount, base_path)
    if moved.startswith("//"):  # `///evil.example`: browsers read any run of slashes as `//`
        raise OffOrigin(value)
    return moved


def rewrite_refresh(value: str, mount: str, base_path: str, port: int, host: str) -> str | None:
    """`Refresh: <seconds>; url=<target>` (a redirect too): its target as for `Location`;
    None (drop the header) when it leaves the origin."""
    delay, _, rest = value.partition(";")
    key, _, target = rest.strip().partition("=")
    if key.strip().lower() != "url":
        return value
    try:
        return (
            f"{delay.strip()}; url={rewrite_location(target.strip(), mount, base_path, port, host)}"
        )
    except OffOrigin:
        return None


def _remount(path: str, mount: str, base_path: str) -> str:
    if not base_path:
        return mount + path
    if path == base_path or path.startswith((base_path + "/", base_path + "?", base_path + "#")):
        return mount + path[len(base_path) :]
    return path  # outside the app's own base path: not ours to move


def rewrite_set_cookie(
    value: str, mount: str, base_path: str, cookie_names: Iterable[str]
) -> str | None:
    """The app's cookie scoped to the mount (`Path`) and to the app's own host (no `Domain`:
    an app cannot set cookies for its neighbours); None for a cookie that would replace one
    of dockyard's own."""
    parts = [p.strip() for p in value.split(";")]
    if parts[0].partition("=")[0].strip() in set(cookie_names):
        return None
    out = [parts[0]]
    for attribute in parts[1:]:
        key, _, attr_value = attribute.partition("=")
        if key.strip().lower() == "path" and attr_value.startswith("/"):
            attribute = f"Path={_remount(attr_value, mount, base_path)}"
        elif key.strip().lower() == "domain":
            continue
        out.append(attribute)
    return "; ".join(out)


@dataclass(frozen=True, slots=True)
class Mount:
    """Where the client sees the app (see the module's words)."""

    mount: str
    base_path: str
    port: int
    host: str


def response_headers(
    headers: Iterable[tuple[str, str]], where: Mount, cookie_names: Iterable[str]
) -> Headers:
    """The app's response headers for the client: hop-by-hop ones dropped, redirects and
    cookie paths moved under the mount; OffOrigin for a redirect off the app's origin."""
    pairs = list(headers)
    drop = HOP_BY_HOP | _connection_listed(pairs)
    names = tuple(cookie_names)
    out: Headers = []
    for name, value in pairs:
        lower = name.lower()
        if lower in drop:
            continue
        rewritten: str | None = value
        if lower == "location":
            rewritten = rewrite_location(
                value, where.mount, where.base_path, where.port, where.host
            )
        elif lower == "refresh":
            rewritten = rewrite_refresh(value, where.mount, where.base_path, where.port, where.host)
        elif lower == "set-cookie":
            rewritten = rewrite_set_cookie(value, where.mount, where.base_path, names)
        if rewritten is not None:
            out.append((lower, rewritten))
    return out


# who is asking: X-Forwarded-* only from trusted proxies ------------------------------------
@dataclass(frozen=True, slots=True)
class Seen:
    """What the server believes about a request: the client's address, the chain of
    addresses to pass on (`X-Forwarded-For`), the scheme and the host the client used."""

    client: str
    chain: str
    proto: str
    host: str


@lru_cache(maxsize=16)
def networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    """`DOCKYARD_TRUSTED_PROXIES` as networks; ValueError names a bad entry."""
    out = []
    for entry in proxies:
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"DOCKYARD_TRUSTED_PROXIES: {entry!r} is not an IP address or network"
                " (e.g. 10.0.0.5 or 10.0.0.0/24); fix the setting"
            ) from None
    return tuple(out)


def trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def _first(value: str | None) -> str:
    return (value or "").split(",")[0].strip()


def seen(peer: str, scheme: str, headers: Mapping[str, str], proxies: Sequence[Network]) -> Seen:
    """The request as the server should believe it. From anyone but a trusted proxy the
    client's own `X-Forwarded-*` headers count for nothing; from a trusted proxy they are
    taken: the client is the nearest address of `X-Forwarded-For` that is no trusted proxy."""
    host = headers.get("host", "")
    if not proxies or not trusted(peer, proxies):
        return Seen(peer, peer, scheme, host)
    previous = headers.get("x-forwarded-for", "")
    hops = [h.strip() for h in previous.split(",") if h.strip()]
    client = next((h for h in reversed(hops) if not trusted(h, proxies)), hops[0] if hops else peer)
    chain = f"{previous}, {peer}" if previous else peer
    proto = _first(headers.get("x-forwarded-proto")).lower()
    return Seen(
        client,
        chain,
        proto if proto in ("http", "https") else scheme,
        _first(headers.get("x-forwarded-host")) or host,
    )
