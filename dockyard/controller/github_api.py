"""The few calls dockyard makes to GitHub's REST API: commit statuses or check runs, the one
pull request comment per workspace, the webhook made at link time, and for a GitHub App its
installation, installation tokens and webhook deliveries (docs/github.md).

A thin httpx client rather than PyGithub (which the design card names), because these calls
run inside the delivery processing loop and a link request, where PyGithub's defaults do not
fit: it reads every answer whole (a hostile or broken host can send any size), it retries
with urllib3's backoff and sleeps between writes on its own (`seconds_between_writes`, waits
for secondary rate limits), and it resolves a repository with a GET before any call on it
(unless `lazy`). Here every request has one bounded timeout, no retry, no sleep, and every
answer is read at most `MAX_ANSWER_BYTES` (a page of comments at most `MAX_PAGE_BYTES`).

`Auth` is what a credential must give: the `Authorization` header. A token gives `Bearer …`;
a GitHub App gives its JWT for the App's own calls (`AppApi`, `github_app.JwtAuth`) and an
installation token for the repository's (`TokenAuth` over `LinkTarget.credential`). Every
error is one `GitHubError` line naming the call, GitHub's status and the fix.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlsplit

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
MAX_CHECK_TEXT = 65535
"""GitHub refuses a check run's `output.summary` (or `text`) longer than this."""
MAX_CHECK_TITLE = 255
"""A check run's `output.title` is one line; dockyard keeps it to this."""
CONCLUSIONS = ("success", "failure", "neutral", "cancelled", "skipped", "timed_out")
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
class LazyAuth:
    """`Bearer` over a token asked for at each request (a link's `credential`, which may be
    an installation token minted or refreshed on demand)."""

    token: Callable[[], str] = field(repr=False)

    def authorization(self) -> str:
        return f"Bearer {self.token()}"


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
    ("check", 403): "the GitHub App cannot write checks: give it `Checks: write` (App"
    " settings > Permissions), then accept the new permission on the installation",
    ("check", 404): "the GitHub App cannot see the repository or the check run: install it"
    " on the repository with `Checks: write`",
    ("check", 422): "GitHub refused the check run (an unknown commit, or a field it rejects)",
    ("installation", 401): "the App id or the private key is wrong: use the App ID shown on"
    " the App's settings page and a private key generated there",
    ("installation", 404): "the GitHub App is not installed on this repository: install it"
    " (App settings > Install App) on the repository, then link again",
    ("app_token", 401): "the App id or the private key is wrong: link again with the App's"
    " id and a private key generated on its settings page",
    ("app_token", 403): "the installation is suspended or lacks a permission: check the"
    " App's installation in the organization's settings",
    ("app_token", 404): "the GitHub App is no longer installed there: install it again on"
    " the repository",
    ("deliveries", 401): "the App id or the private key is wrong: link again with the App's"
    " id and a private key generated on its settings page",
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


def cut(text: str, limit: int) -> str:
    """Markdown cut to `limit` characters, lines kept, saying that it was cut."""
    if len(text) <= limit:
        return text
    note = "\n\n… (cut: GitHub shows at most 65,535 characters; the dashboard has it all)"
    return text[: limit - len(note)].rstrip() + note


class _Rest:
    """One API (github.com `https://api.github.com`, GitHub Enterprise Server
    `https://HOST/api/v3`, or a loopback stand-in in tests) with one credential."""

    def __init__(
        self,
        base_url: str,
        auth: Auth,
        *,
        timeout: float = TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.transport = transport

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
        return self._request(call, method, path, body, params=params, limit=limit)[0]

    def _request(
        self,
        call: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        limit: int = MAX_ANSWER_BYTES,
    ) -> tuple[Any, httpx.Headers]:
        """GitHub's parsed answer and its headers (a page's `Link`)."""
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
        try:
            return (json.loads(raw) if raw.strip() else None), answer.headers
        except ValueError:
            raise GitHubError(f"{what}: GitHub's answer is not JSON") from None


class GitHubApi(_Rest):
    """One repository on one API."""

    def __init__(
        self,
        base_url: str,
        repo: str,
        auth: Auth,
        *,
        timeout: float = TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, auth, timeout=timeout, transport=transport)
        owner, _, name = repo.partition("/")
        self.repo = repo
        self.prefix = f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"

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

    def create_check_run(self, name: str, head_sha: str, status: str) -> int:
        """A check run on `head_sha` (App links); returns its id for `update_check_run`."""
        body = {"name": name, "head_sha": head_sha, "status": status}
        made = self._call("check", "POST", f"{self.prefix}/check-runs", body)
        run_id = made.get("id") if isinstance(made, dict) else None
        if not isinstance(run_id, int):
            raise GitHubError("creating the check run: GitHub's answer has no id")
        return run_id

    def complete_check_run(self, run_id: int | None, head_sha: str, check: "Check") -> None:
        """Complete the check run `run_id`, or create it completed when there is none (its
        start was never told)."""
        body: dict[str, Any] = {
            "name": check.name,
            "status": "completed",
            "conclusion": check.conclusion,
            "output": {
                "title": short(check.title, MAX_CHECK_TITLE),
                "summary": cut(check.summary or check.title, MAX_CHECK_TEXT),
            },
        }
        if check.details_url:
            body["details_url"] = check.details_url
        if run_id is None:
            self._call("check", "POST", f"{self.prefix}/check-runs", {**body, "head_sha": head_sha})
        else:
            self._call("check", "PATCH", f"{self.prefix}/check-runs/{run_id}", body)

    def installation(self) -> int:
        """The id of the App installation that covers the repository (App JWT auth)."""
        found = self._call("installation", "GET", f"{self.prefix}/installation")
        found_id = found.get("id") if isinstance(found, dict) else None
        if not isinstance(found_id, int):
            raise GitHubError(f"finding the App's installation on {self.repo}: no id in the answer")
        return found_id


@dataclass(frozen=True, slots=True)
class Check:
    """A completed check run: conclusion, one-line title, Markdown summary, link."""

    name: str
    conclusion: str
    title: str
    summary: str
    details_url: str | None = None


@dataclass(frozen=True, slots=True)
class HookDelivery:
    """One entry of an App's webhook delivery log."""

    id: int
    guid: str
    delivered_at: str
    ok: bool  # GitHub got a 2xx/3xx answer
    redelivery: bool


class AppApi(_Rest):
    """The App's own calls, made with its JWT (`github_app.JwtAuth`)."""

    def installation_token(self, installation_id: int, repo_name: str) -> tuple[str, str]:
        """A token for the installation, limited to the repository `repo_name` (NAME of
        OWNER/NAME): (token, expires_at as GitHub wrote it)."""
        path = f"/app/installations/{installation_id}/access_tokens"
        made = self._call("app_token", "POST", path, {"repositories": [repo_name]})
        token = made.get("token") if isinstance(made, dict) else None
        expires = made.get("expires_at") if isinstance(made, dict) else None
        if not isinstance(token, str) or not token or not isinstance(expires, str):
            raise GitHubError("minting an installation token: no token in GitHub's answer")
        return token, expires

    def hook_deliveries(self, max_pages: int) -> Iterator[HookDelivery]:
        """The App webhook's deliveries, newest first, at most `max_pages` pages of 100."""
        params = {"per_page": "100"}
        for _ in range(max_pages):
            found, headers = self._request(
                "deliveries", "GET", "/app/hook/deliveries", params=params, limit=MAX_PAGE_BYTES
            )
            if not isinstance(found, list):
                raise GitHubError("listing the App's deliveries: GitHub's answer is not a list")
            yield from (d for d in map(_hook_delivery, found) if d is not None)
            cursor = next_cursor(headers.get("link", ""))
            if cursor is None or not found:
                return
            params = {"per_page": "100", "cursor": cursor}

    def redeliver(self, delivery_id: int) -> None:
        self._call("deliveries", "POST", f"/app/hook/deliveries/{delivery_id}/attempts")


def next_cursor(link: str) -> str | None:
    """The `cursor` of the `rel="next"` page of a `Link` header, if any."""
    for part in link.split(","):
        target, _, rel = part.partition(";")
        if 'rel="next"' not in rel:
            continue
        query = urlsplit(target.strip().strip("<>")).query
        for name, value in parse_qsl(query):
            if name == "cursor" and value:
                return value[:200]
    return None


def _hook_delivery(item: Any) -> HookDelivery | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        return None
    guid, status, code = item.get("guid"), item.get("status"), item.get("status_code")
    if not isinstance(guid, str) or not isinstance(code, int):
        return None
    ok = 200 <= code < 400 and (status in (None, "OK") or str(status).upper() == "OK")
    delivered = item.get("delivered_at")
    return HookDelivery(
        item["id"],
        guid[:64],
        delivered if isinstance(delivered, str) else "",
        ok,
        item.get("redelivery") is True,
    )


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


def for_link(api_url: str, repo: str, credential: Callable[[], str]) -> GitHubApi:
    """The client for a link's repository; `credential` gives the token at each request (the
    link's own token, or an App installation token, minted when needed)."""
    return GitHubApi(api_url, repo, LazyAuth(credential))
