"""The few calls dockyard makes to GitHub's REST API: commit statuses, the one pull request
comment per workspace, and the webhook made at link time (docs/github.md).

A thin httpx client rather than PyGithub (which the design card names), because these calls
run inside the delivery processing loop and a link request, where PyGithub's defaults do not
fit: it reads every answer whole (a hostile or broken host can send any size), it retries
with urllib3's backoff and sleeps between writes on its own (`seconds_between_writes`, waits
for secondary rate limits), and it resolves a repository with a GET before any call on it
(unless `lazy`). Here every request has one bounded timeout, no retry, no sleep, and every
answer is read at most `MAX_ANSWER_BYTES` (a page of comments at most `MAX_PAGE_BYTES`).

`Auth` is what a credential must give: the `Authorization` header. A token gives `Bearer …`;
a GitHub App (a later increment) will give an installation token the same way. Every error
is one `GitHubError` line naming the call, GitHub's status and the fix.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from dockyard.errors import DockyardError

TIMEOUT_S = 10.0
"""Per request (connect, read, write, pool each): GitHub itself gives a receiver 10 s."""
MAX_ANSWER_BYTES = 1024 * 1024
"""A comment's answer holds its body, up to 65,536 characters."""
MAX_PAGE_BYTES = 4 * 1024 * 1024
"""A page of 100 comments, each up to GitHub's 65,536 characters, is larger than one answer."""
MAX_COMMENT_PAGES = 10
"""At most 1,000 comments are looked through for the workspace's own."""
MAX_DESCRIPTION = 140
"""GitHub refuses a commit status description longer than this."""
API_VERSION = "2022-11-28"
USER_AGENT = "dockyard"

STATES = ("error", "failure", "pending", "success")


class GitHubError(DockyardError):
    """A call to GitHub's API failed; the message says which, with what status, and the fix."""

    code = "github_api"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Auth(Protocol):
    def authorization(self) -> str:
        """The `Authorization` header's value for the next request."""
        ...


@dataclass(frozen=True, slots=True)
class TokenAuth:
    token: str = field(repr=False)

    def authorization(self) -> str:
        return f"Bearer {self.token}"


@dataclass(frozen=True, slots=True)
class Comment:
    id: int
    body: str


FIXES: dict[tuple[str, int], str] = {
    ("status", 403): "the token cannot write commit statuses: give it `Commit statuses: write`",
    ("status", 404): "the token cannot see the repository or the commit: give it access to"
    " the repository and `Commit statuses: write`",
    ("status", 422): "GitHub refused the status (an unknown commit, or too many statuses on it)",
    ("comment", 403): "the token cannot comment on pull requests: give it"
    " `Pull requests: write` (or `Issues: write`)",
    ("comment", 404): "the token cannot see the pull request: give it access to the repository"
    " and `Pull requests: write`",
    ("hook", 403): "the token cannot create webhooks: give it `Webhooks: write` (classic"
    " token: `admin:repo_hook`), or create the webhook by hand",
    ("hook", 404): "the repository is not visible to the token, or it may not manage"
    " webhooks: give it `Webhooks: write`, or create the webhook by hand",
    ("hook", 422): "GitHub refused the webhook (its URL must be one GitHub can reach; see"
    " DOCKYARD_PUBLIC_URL)",
}
GENERIC: dict[int, str] = {
    401: "the token is wrong, expired or revoked: link again with a valid one",
    429: "GitHub's rate limit was reached: it is tried again on the next delivery",
}


def fix_for(call: str, status: int) -> str:
    if status >= 500:
        return "GitHub failed on its side: it is tried again on the next delivery"
    return FIXES.get((call, status)) or GENERIC.get(status) or "see GitHub's answer above"


def short(text: str, limit: int = MAX_DESCRIPTION) -> str:
    """Cut to `limit` characters, honestly: a cut text ends with "…"."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


class GitHubApi:
    """One repository on one API (github.com `https://api.github.com`, GitHub Enterprise
    Server `https://HOST/api/v3`, or a loopback stand-in in tests)."""

    def __init__(
        self,
        base_url: str,
        repo: str,
        auth: Auth,
        *,
        timeout: float = TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        owner, _, name = repo.partition("/")
        self.repo = repo
        self.prefix = f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"
        self.auth = auth
        self.timeout = timeout
        self.transport = transport

    def create_status(
        self, sha: str, state: str, context: str, description: str, target_url: str | None
    ) -> None:
        body: dict[str, Any] = {
            "state": state,
            "context": context,
            "description": short(description),
        }
        if target_url:
            body["target_url"] = target_url
        self._call("status", "POST", f"{self.prefix}/statuses/{quote(sha, safe='')}", body)

    def comments(self, number: int) -> Iterator[Comment]:
        """The pull request's comments, oldest first, at most `MAX_COMMENT_PAGES` pages."""
        for page in range(1, MAX_COMMENT_PAGES + 1):
            params = {"per_page": "100", "page": str(page)}
            found = self._call(
                "comment",
                "GET",
                f"{self.prefix}/issues/{number}/comments",
                params=params,
                limit=MAX_PAGE_BYTES,
            )
            if not isinstance(found, list):
                raise GitHubError(f"listing comments of #{number}: GitHub's answer is not a list")
            yield from (_comment(item) for item in found)
            if len(found) < 100:
                return

    def create_comment(self, number: int, body: str) -> Comment:
        path = f"{self.prefix}/issues/{number}/comments"
        return _comment(self._call("comment", "POST", path, {"body": body}))

    def edit_comment(self, comment_id: int, body: str) -> Comment:
        path = f"{self.prefix}/issues/comments/{comment_id}"
        return _comment(self._call("comment", "PATCH", path, {"body": body}))

    def create_hook(self, url: str, secret: str, events: tuple[str, ...]) -> int:
        """A repository webhook sending `events` as JSON to `url`; returns GitHub's hook id."""
        body = {
            "name": "web",
            "active": True,
            "events": list(events),
            "config": {"url": url, "content_type": "json", "secret": secret, "insecure_ssl": "0"},
        }
        made = self._call("hook", "POST", f"{self.prefix}/hooks", body)
        hook_id = made.get("id") if isinstance(made, dict) else None
        if not isinstance(hook_id, int):
            raise GitHubError("creating the webhook: GitHub's answer has no hook id")
        return hook_id

    def delete_hook(self, hook_id: int) -> None:
        self._call("hook", "DELETE", f"{self.prefix}/hooks/{hook_id}")

    def _call(
        self,
        call: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        limit: int = MAX_ANSWER_BYTES,
    ) -> Any:
        what = f"{method} {self.base_url}{path}"
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
            "Authorization": self.auth.authorization(),
        }
        try:
            with (
                httpx.Client(timeout=self.timeout, transport=self.transport) as client,
                client.stream(
                    method, self.base_url + path, json=body, params=params, headers=headers
                ) as answer,
            ):
                raw = _read(answer, limit, what)
        except httpx.HTTPError as exc:
            raise GitHubError(f"{what}: {type(exc).__name__}: {exc or 'no answer'}") from exc
        if answer.status_code >= 300:
            status = answer.status_code
            fix = fix_for(call, status)
            raise GitHubError(f"{what} answered {status}{_message(raw)}: {fix}", status)
        return json.loads(raw) if raw.strip() else None


def _read(answer: httpx.Response, limit: int, what: str) -> bytes:
    out = bytearray()
    for chunk in answer.iter_bytes():
        out += chunk
        if len(out) > limit:
            raise GitHubError(f"{what}: the answer is over {limit} bytes; not read further")
    return bytes(out)


def _message(raw: bytes) -> str:
    """GitHub's own `message`, one line and short, if its answer has one."""
    try:
        found = json.loads(raw)
    except ValueError:
        return ""
    text = found.get("message") if isinstance(found, dict) else None
    return f" ({short(text, 160)})" if isinstance(text, str) and text else ""


def _comment(item: Any) -> Comment:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        raise GitHubError("GitHub's answer is not a comment")
    body = item.get("body")
    return Comment(item["id"], body if isinstance(body, str) else "")


def for_link(api_url: str, repo: str, credential_kind: str, credential: str) -> GitHubApi:
    """The client for a link's repository with its (clear, in memory) credential."""
    if credential_kind != "token":
        raise GitHubError(
            f"credential kind {credential_kind!r} is not supported yet (GitHub App mode is"
            " not built); link again with --token-env"
        )
    return GitHubApi(api_url, repo, TokenAuth(credential))
