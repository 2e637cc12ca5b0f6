"""What a verified delivery asks for: pure classification, no I/O.

`classify` reads the event name (`X-GitHub-Event`) and the parsed payload, and says what the
delivery is (`kind`), the status it is stored with and why:

- `ping` → done (GitHub sends it when the webhook is made);
- `push` to the linked branch → `deploy`, received (processing deploys the branch head as
  fetched then, never the payload's commit, so order does not matter);
- `pull_request` opened / synchronize / reopened against the linked branch → `plan`;
- `installation` / `installation_repositories` (a GitHub App's webhook) → done, with what
  changed (recorded, nothing to do: links name their repository, and the installation is
  asked for again when a token is minted);
- anything else (another branch, a tag, a branch deletion, another repository, other
  actions and events) → ignored, with the reason stored and shown.

Only the fields named here are read, each checked for its type and bounded in length.
"""

from dataclasses import dataclass
from typing import Any

PLAN_ACTIONS = ("opened", "synchronize", "reopened")
APP_EVENTS = ("installation", "installation_repositories")
ZERO_SHA = "0" * 40
MAX_FIELD = 255
MAX_REPO = 140  # the columns' sizes (models.GithubDelivery)
MAX_ACTION = 64


@dataclass(frozen=True, slots=True)
class Target:
    """What the delivery is compared against: the link's repository and branch."""

    repo: str  # OWNER/NAME
    branch: str


@dataclass(frozen=True, slots=True)
class Classified:
    kind: str  # ping | deploy | plan | none
    status: str  # done | received | ignored
    reason: str | None = None  # why it was ignored, or what a ping said
    action: str | None = None
    repo: str | None = None
    ref: str | None = None
    head_sha: str | None = None
    before_sha: str | None = None
    after_sha: str | None = None


def classify(event: str, payload: Any, target: Target) -> Classified:
    """The delivery's kind and first status (see the module's docstring)."""
    if not isinstance(payload, dict):
        return Classified("none", "ignored", "the payload is not a JSON object")
    repo = _text(_get(payload, "repository", "full_name"), MAX_REPO)
    if event == "ping":
        zen = _text(payload.get("zen"))
        return Classified("ping", "done", f"ping: {zen}" if zen else "ping", repo=repo)
    if event in APP_EVENTS:
        return _installation(event, payload)
    if repo is None or repo.lower() != target.repo.lower():
        reason = f"the delivery is for repository {repo or '(none)'}, not {target.repo}"
        return Classified("none", "ignored", reason, _text(payload.get("action"), MAX_ACTION), repo)
    if event == "push":
        return _push(payload, target, repo)
    if event == "pull_request":
        return _pull_request(payload, target, repo)
    return Classified("none", "ignored", f"{event!r} events are not used", repo=repo)


def _push(payload: dict[str, Any], target: Target, repo: str) -> Classified:
    ref = _text(payload.get("ref"))
    before, after = _sha(payload.get("before")), _sha(payload.get("after"))
    fields = {"repo": repo, "ref": ref, "before_sha": before, "after_sha": after}
    if ref is not None and ref.startswith("refs/tags/"):
        return Classified("none", "ignored", f"tag push ({ref}): tags are not deployed", **fields)
    if payload.get("deleted") is True or after in (None, ZERO_SHA):
        reason = f"branch deletion ({ref or 'no ref'}): nothing to deploy"
        return Classified("none", "ignored", reason, **fields)
    if ref != f"refs/heads/{target.branch}":
        reason = f"push to {ref or '(no ref)'}; the linked branch is {target.branch}"
        return Classified("none", "ignored", reason, **fields)
    return Classified("deploy", "received", head_sha=after, **fields)


def _pull_request(payload: dict[str, Any], target: Target, repo: str) -> Classified:
    action = _text(payload.get("action"), MAX_ACTION)
    number = _get(payload, "pull_request", "number")
    head = _sha(_get(payload, "pull_request", "head", "sha"))
    base = _text(_get(payload, "pull_request", "base", "ref"))
    ref = f"refs/pull/{number}/head" if isinstance(number, int) else None
    fields = {"action": action, "repo": repo, "ref": ref, "head_sha": head}
    if action not in PLAN_ACTIONS:
        reason = f"pull request {action or '(no action)'}: only {', '.join(PLAN_ACTIONS)} plan"
        return Classified("none", "ignored", reason, **fields)
    if base != target.branch:
        reason = f"pull request into {base or '(none)'}; the linked branch is {target.branch}"
        return Classified("none", "ignored", reason, **fields)
    if head is None:
        return Classified("none", "ignored", "pull request without a head commit", **fields)
    return Classified("plan", "received", **fields)


def repository(payload: Any) -> str | None:
    """The payload's `repository.full_name` (OWNER/NAME), bounded; None if it has none (an
    App's `ping` and installation events)."""
    if not isinstance(payload, dict):
        return None
    return _text(_get(payload, "repository", "full_name"), MAX_REPO)


def _installation(event: str, payload: dict[str, Any]) -> Classified:
    """An App installation changed: recorded as done, with its action and repositories."""
    action = _text(payload.get("action"), MAX_ACTION)
    added = _names(payload.get("repositories_added") or payload.get("repositories"))
    removed = _names(payload.get("repositories_removed"))
    parts = [f"{event.replace('_', ' ')} {action or '(no action)'}"]
    parts += [f"added {added}"] if added else []
    parts += [f"removed {removed}"] if removed else []
    return Classified("none", "done", "; ".join(parts)[:MAX_FIELD], action)


def _names(value: Any, shown: int = 5) -> str:
    """`a/b, c/d` for a list of repository objects, the first `shown` of them."""
    if not isinstance(value, list):
        return ""
    names = [_text(_get(r, "full_name"), MAX_REPO) for r in value[:shown] if isinstance(r, dict)]
    more = f" and {len(value) - shown} more" if len(value) > shown else ""
    return ", ".join(n for n in names if n) + more


def _get(payload: dict[str, Any], *keys: str) -> Any:
    value: Any = payload
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _text(value: Any, limit: int = MAX_FIELD) -> str | None:
    """A string field, cut to what the table holds (a payload's strings are unbounded)."""
    return value[:limit] if isinstance(value, str) and value else None


def _sha(value: Any) -> str | None:
    """A 40-hex commit id, else None."""
    if isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value):
        return value
    return None
