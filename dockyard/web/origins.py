"""Where a request came from, as far as the server may believe it, and the same-origin rule
for forms that mint credentials.

Behind a reverse proxy the client's address, scheme and host arrive in `X-Forwarded-*`
headers, which any client can write as well. They count only from the addresses in
`DOCKYARD_TRUSTED_PROXIES` (none by default). uvicorn's own handling of them is off
(`dockyard server` starts it with `proxy_headers=False`): it believes 127.0.0.1, which is
where every job of the local executor connects from.
"""

from fastapi import Request
from starlette.requests import HTTPConnection

from dockyard.controller import app_origins
from dockyard.controller.assembly import Controller
from dockyard.errors import Forbidden
from dockyard.settings import Settings
from dockyard.web import forwarding


def _controller(conn: HTTPConnection) -> Controller:
    ctl: Controller = conn.app.state.controller
    return ctl


SEEN = "dockyard.seen"  # the scope key it is kept under, once worked out


def seen(conn: HTTPConnection) -> forwarding.Seen:
    """The client's address, the chain to pass on, the scheme and the host it used."""
    return seen_with(conn, _controller(conn).settings)


def seen_with(conn: HTTPConnection, settings: Settings) -> forwarding.Seen:
    found: forwarding.Seen | None = conn.scope.get(SEEN)
    if found is None:
        proxies = forwarding.networks(settings.trusted_proxies)
        peer = conn.client.host if conn.client else ""
        scheme = str(conn.scope.get("scheme") or "http")
        scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        found = forwarding.seen(peer, scheme, conn.headers, proxies)
        conn.scope[SEEN] = found
    return found


def is_https(conn: HTTPConnection) -> bool:
    """Whether the browser reached us over https: directly, through a trusted proxy that
    says so, or by the server's public URL."""
    public = _controller(conn).settings.public_url or ""
    return seen(conn).proto == "https" or public.startswith("https://")


def is_foreign(conn: HTTPConnection) -> bool:
    """An `Origin` header from another origin (`null` included); none at all is not."""
    origin = conn.headers.get("origin")
    return origin is not None and not app_origins.same_origin(origin, seen(conn).host)


def check_same_origin(request: Request, what: str) -> None:
    """A form that mints a credential must come from a page of this very origin: its
    `Origin` header present (browsers send it with every POST) and this origin's."""
    origin = request.headers.get("origin")
    if origin is None or is_foreign(request):
        sent = f"Origin {origin!r}" if origin is not None else "no Origin header"
        raise Forbidden(
            f"{what} refused: the request came with {sent}, not from this dashboard's own"
            " page; use the form on the dashboard (scripts: send Authorization: Bearer)"
        )
