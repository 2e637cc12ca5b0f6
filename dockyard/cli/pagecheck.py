"""Does an app's page load, not only answer? What `dockyard serve` checks before it says so.

A page can answer 200 and still show nothing: marimo's page is an empty shell whose scripts
and styles make the notebook, and dlt's launcher points them at a CDN by default. On a
machine that cannot reach the CDN the browser shows a blank page, while the proxy and the
app are fine. So once the app answers, `serve` reads its page (an HTML answer only, at most
`MAX_PAGE` bytes) and fetches the first script and the first stylesheet it references:
through the server with the CLI's token when they are on the app's origin, without any
credential when they are on another host. One that does not come back 200 is the failure,
said in one line. Answers other than an HTML page (an MCP server's 404 at `/`, JSON) have
nothing to check.
"""

import http.client
import urllib.parse
from dataclasses import dataclass
from html.parser import HTMLParser

MAX_PAGE = 1024 * 1024
MAX_ASSET = 64 * 1024  # enough to know it arrives; the rest is not read
TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    body: bytes


class _Assets(HTMLParser):
    """The scripts (`<script src>`) and stylesheets (`<link rel=stylesheet href>`) a page
    references, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): v or "" for k, v in attrs}
        if tag == "script" and values.get("src"):
            self.scripts.append(values["src"])
        rel = values.get("rel", "").lower().split()
        if tag == "link" and "stylesheet" in rel and values.get("href"):
            self.styles.append(values["href"])


def assets(html: str, base: str) -> list[tuple[str, str]]:
    """(kind, absolute URL) of the page's first script and first stylesheet."""
    parser = _Assets()
    parser.feed(html)
    found = [("script", parser.scripts[:1]), ("stylesheet", parser.styles[:1])]
    return [(kind, urllib.parse.urljoin(base, ref)) for kind, refs in found for ref in refs]


def problem(url: str, token: str | None) -> str | None:
    """Why the page at `url` (the app's origin, as `serve` prints it) cannot load in a
    browser, or None when it can (or is not a page)."""
    try:
        page = fetch(url, token, MAX_PAGE)
    except (OSError, http.client.HTTPException) as exc:
        return f"its page at {url} did not come back ({exc})"
    if page.status != 200 or not page.content_type.startswith("text/html"):
        return None
    origin = _origin(url)
    for kind, asset in assets(page.body.decode("utf-8", "replace"), url):
        own = _origin(asset) == origin
        try:
            answer = fetch(asset, token if own else None, MAX_ASSET)
        except (OSError, http.client.HTTPException) as exc:
            return _unreachable(url, kind, asset, str(exc) or type(exc).__name__)
        if answer.status != 200:
            return _unreachable(url, kind, asset, f"HTTP {answer.status}")
    return None


def _unreachable(url: str, kind: str, asset: str, reason: str) -> str:
    where = "" if _origin(asset) == _origin(url) else " on another host"
    return (
        f"its page at {url} cannot load: the {kind} it needs{where}, {asset}, does not"
        f" come back ({reason}); a browser would show a blank page (for a marimo notebook,"
        " leave `asset_url` unset so the notebook's own server sends its front end)"
    )


def fetch(url: str, token: str | None, limit: int) -> Answer:
    """GET `url` (no redirects followed), at most `limit` bytes of its body."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise OSError(f"not an http(s) URL: {url}")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(address(parts), timeout=TIMEOUT_S)
    headers = {"Host": parts.netloc, "Accept": "text/html,*/*"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read(limit)
        return Answer(response.status, response.getheader("content-type") or "", body)
    finally:
        connection.close()


def address(parts: urllib.parse.SplitResult) -> str:
    """Where to connect for a URL: `*.localhost` names are loopback (RFC 6761), as browsers
    read them, even where the system's resolver does not know them."""
    host = parts.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return f"127.0.0.1:{parts.port}" if parts.port else "127.0.0.1"
    return parts.netloc


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc.lower()
