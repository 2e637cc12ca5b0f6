"""A branch's head on a git host, asked cheaply: the smart HTTP ref advertisement
(`GET <repo>.git/info/refs?service=git-upload-pack`, what `git ls-remote` reads), not a fetch.

The sweeper (`sweeper.py`) asks this of every linked repository once a minute, so it must
cost the host and the server next to nothing, and everything the host sends is hostile: the
URL follows the fetch's rule (`sourcemirror.check_url`: https, plain http only to loopback,
no credentials inside), redirects are not followed (a token never goes anywhere else), the
answer is read as a stream of pkt-lines that stops at the branch's line, at `MAX_BYTES`, or
at the deadline, whichever comes first, and each line is checked before it is believed.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from dockyard.controller import sourcemirror
from dockyard.errors import InvalidInput, Unauthorized, Unavailable

SERVICE = "git-upload-pack"
CONTENT_TYPE = f"application/x-{SERVICE}-advertisement"
MAX_BYTES = 8 * 1024 * 1024
"""Branches are advertised before `refs/pull/…` and tags (refs come sorted), so the read
stops early; the cap bounds a host that sends an endless list."""
TIMEOUT_S = 10.0
MAX_PKT = 65520  # the largest pkt-line git allows
HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Ask:
    url: str  # the repository's clone URL (`deploying.clone_url`)
    branch: str
    token: str | None = field(repr=False)  # HTTP Basic `x-access-token:<token>`, as GitHub
    timeout_s: float = TIMEOUT_S  # the whole question, connect to last byte


def branch_head(ask: Ask) -> str:
    """The commit `refs/heads/<branch>` points at on the host; a one-line error otherwise."""
    sourcemirror.check_url(ask.url)
    sourcemirror.check_branch(ask.branch)
    deadline = time.monotonic() + ask.timeout_s
    auth = httpx.BasicAuth("x-access-token", ask.token) if ask.token else None
    shown = _shown(ask.url)
    try:
        with (
            httpx.Client(timeout=ask.timeout_s, follow_redirects=False) as client,
            client.stream(
                "GET",
                f"{ask.url.rstrip('/')}/info/refs",
                params={"service": SERVICE},
                headers={"Accept": CONTENT_TYPE, "User-Agent": "git/2 dockyard"},
                auth=auth,
            ) as response,
        ):
            _check_answer(response, shown)
            return _find(response.iter_bytes(), f"refs/heads/{ask.branch}", deadline, shown)
    except httpx.HTTPError as exc:
        raise Unavailable(f"asking {shown} for its branches failed: {exc}") from None


def _check_answer(response: httpx.Response, shown: str) -> None:
    status = response.status_code
    if status in (401, 403):
        raise Unauthorized(f"{shown} refused the link's credentials (answer {status})")
    if status == 404:
        raise InvalidInput(f"no repository at {shown}, or the credentials cannot see it")
    if 300 <= status < 400:
        moved = response.headers.get("location", "")[:200]
        raise InvalidInput(f"{shown} moved ({status} to {moved}); link the new name again")
    if status != 200:
        raise Unavailable(f"{shown} answered {status} when asked for its branches")
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    if kind != CONTENT_TYPE:
        raise Unavailable(f"{shown} is not a smart HTTP git host (content type {kind[:80]!r})")


def _find(chunks: Iterator[bytes], ref: str, deadline: float, shown: str) -> str:
    """Read pkt-lines until `ref`'s; the bounds are the module docstring's."""
    lines = PktLines()
    for chunk in chunks:
        if time.monotonic() > deadline:
            raise Unavailable(f"{shown} took too long to list its branches")
        for line in lines.feed(chunk):
            found = match(line, ref)
            if found is not None:
                return found
        if lines.total > MAX_BYTES:
            raise Unavailable(f"{shown} listed over {MAX_BYTES} bytes of refs without {ref}")
        if lines.ended:
            break
    raise InvalidInput(f"{shown} has no branch {ref.removeprefix('refs/heads/')!r}")


class PktLines:
    """git's pkt-line framing, fed as bytes arrive: a 4-hex-digit length (itself included),
    then the payload; `0000` is a flush. The advertisement is the service line, a flush, the
    refs, a flush: `ended` once that second flush is read."""

    def __init__(self) -> None:
        self.buffer = b""
        self.total = 0
        self.flushes = 0

    @property
    def ended(self) -> bool:
        return self.flushes >= 2

    def feed(self, data: bytes) -> list[bytes]:
        self.total += len(data)
        self.buffer += data
        out: list[bytes] = []
        while len(self.buffer) >= 4 and not self.ended:
            size = _length(self.buffer[:4])
            if size == 0:
                self.flushes += 1
                self.buffer = self.buffer[4:]
                continue
            if len(self.buffer) < size:
                break
            out.append(self.buffer[4:size])
            self.buffer = self.buffer[size:]
        return out


def _length(header: bytes) -> int:
    text = header.decode("ascii", "replace")
    if not all(c in HEX for c in text.lower()):
        raise Unavailable("the host's ref list is not in git's pkt-line format")
    size = int(text, 16)
    if size in (1, 2, 3) or size > MAX_PKT:
        raise Unavailable(f"the host's ref list has a malformed line length ({size})")
    return size


def match(line: bytes, ref: str) -> str | None:
    """The SHA of an advertised `<sha> <ref>[\\0capabilities]\\n` line if it names `ref`."""
    text = line.split(b"\0", 1)[0].rstrip(b"\n").decode("utf-8", "replace")
    sha, _, name = text.partition(" ")
    if name != ref or len(sha) != 40 or not set(sha) <= HEX:
        return None
    return sha


def _shown(url: str) -> str:
    parts = httpx.URL(url)
    return f"{parts.scheme}://{parts.host}{parts.path}"
