"""GitHub's own published webhook payloads (npm `@octokit/webhooks-examples`, installed into
`.cache/npm` by tests/setup_machine.sh, which `make test` runs), pointed at the linked
repository and branch, and signed as GitHub signs them."""

import copy
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from dockyard.webhooks import signature

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / ".cache/npm/node_modules/@octokit/webhooks-examples/api.github.com/index.json"


@cache
def _all() -> dict[str, list[dict[str, Any]]]:
    if not EXAMPLES.exists():
        raise AssertionError(f"{EXAMPLES} is missing: run tests/setup_machine.sh (make test does)")
    return {spec["name"]: spec["examples"] for spec in json.loads(EXAMPLES.read_text())}


def example(event: str, match: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the first published example of `event` whose top-level fields match."""
    for payload in _all()[event]:
        if all(_field(payload, key) == value for key, value in (match or {}).items()):
            return copy.deepcopy(payload)
    raise AssertionError(f"no published {event} example with {match}")


def _field(payload: dict[str, Any], dotted: str) -> Any:
    value: Any = payload
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def retarget(payload: dict[str, Any], repo: str, **fields: Any) -> dict[str, Any]:
    """The example as if sent by `repo` (OWNER/NAME), with top-level `fields` replaced."""
    owner, name = repo.split("/")
    if isinstance(payload.get("repository"), dict):
        payload["repository"].update(full_name=repo, name=name)
        payload["repository"].setdefault("owner", {})["login"] = owner
    payload.update(fields)
    return payload


def push(repo: str, branch: str, after: str) -> dict[str, Any]:
    """The published push example (a branch push) to `branch` with head `after`."""
    payload = example("push", {"ref": "refs/heads/master", "deleted": False})
    return retarget(payload, repo, ref=f"refs/heads/{branch}", after=after)


def pull_request(repo: str, branch: str, action: str) -> dict[str, Any]:
    payload = retarget(example("pull_request", {"action": action}), repo)
    payload["pull_request"]["base"]["ref"] = branch
    return payload


def signed(
    secret: str, event: str, payload: dict[str, Any], delivery: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a delivery as GitHub sends it."""
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature.sign(secret.encode(), body),
    }
    return body, headers
