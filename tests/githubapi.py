"""A loopback stand-in for GitHub's REST API that checks every request against GitHub's own
published OpenAPI description (npm `@octokit/openapi`, pinned in tests/setup_machine.sh and
installed into `.cache/npm`), and keeps the state dockyard writes: commit statuses per sha,
comments per pull request, webhooks, check runs. Each recorded commit status carries
`received_at` (`time.time()` when the fake took it: the benchmarks' "check posted" moment).

As a GitHub App's GitHub (`app=AppKey(...)`, `installations={repo: id}`), it checks the App's
JWT on the App's own calls with the App's public key as GitHub does (RS256 signature, `iss`
the App id, `iat` not in the future, `exp` after now and at most 10 minutes after `iat`),
mints installation tokens (`ghs_…`, one hour), accepts only those (unexpired, for the
repository they were minted for) on the repository's calls and on its git host, and keeps
the App webhook's delivery log (`hook_deliveries`, newest first, paged with a `Link`
cursor) and the redeliveries asked for (`attempts`).

Validation (`Spec.check`), for every request:
- path and method must be an operation of the description (else 404 and a violation);
- path parameters and query parameters must be declared and match their schemas (query
  strings are converted to the schema's type first, as GitHub does);
- a JSON body must match the operation's `requestBody` schema, with `$ref`s resolved in the
  description itself and OpenAPI 3.0's `nullable` turned into JSON Schema's `null` type (a
  focused validator on `jsonschema`, Draft 4 as OpenAPI 3.0 is, rather than openapi-core or
  Prism: it loads the 13 MB description once per test session in about a second and checks
  a request in microseconds). `format` is not checked (GitHub documents formats loosely).
A request the description rejects is answered 422 (404 for an unknown path) and recorded in
`violations`; the `github_api` fixture fails the test at teardown if any were recorded.

Given a `GitHost`, the same server also serves its repositories (`/<OWNER/NAME>.git`), so a
link's `--api-url` (`api_url()`, `http://127.0.0.1:PORT/api/v3`) maps to this host's clone
URLs by dockyard's own rule (`webhooks/deploying.clone_url`), as GitHub Enterprise's does.
"""

from __future__ import annotations

import base64
import copy
import functools
import itertools
import json
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jsonschema
import jwt
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.githost import GitHost, _Handler

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC = REPO_ROOT / ".cache/npm/node_modules/@octokit/openapi/generated/api.github.com.json"
SPEC_URI = "urn:github-openapi"
PREFIX = "/api/v3"
MAX_BODY = 2 * 1024 * 1024
Json = Any


@dataclass(frozen=True)
class Operation:
    template: str
    method: str
    pointer: str  # JSON pointer of the operation in the description
    params: dict[tuple[str, str], dict[str, Any]]  # (in, name) -> parameter
    body_schema: str | None  # a $ref to the requestBody's JSON schema
    body_required: bool

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


class Spec:
    """GitHub's REST description, loaded once (`spec()`), and the checks of one request."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise AssertionError(
                f"{path} is missing: run tests/setup_machine.sh (npm @octokit/openapi)"
            )
        doc = _nullable_to_null(json.loads(path.read_text()))
        self.doc = doc
        self.version = doc["info"]["version"]
        self.registry: Registry[Any] = Registry().with_resource(
            SPEC_URI, Resource.from_contents(doc, default_specification=DRAFT4)
        )
        self.routes = [self._route(t, m, op) for t, item in doc["paths"].items()
                       for m, op in item.items() if m in METHODS]  # fmt: skip

    def _route(
        self, template: str, method: str, op: dict[str, Any]
    ) -> tuple[re.Pattern[str], Operation]:
        item = self.doc["paths"][template]
        params = {}
        for raw in [*item.get("parameters", []), *op.get("parameters", [])]:
            param = self._deref(raw)
            params[(param["in"], param["name"])] = param
        body = op.get("requestBody")
        pointer = "/paths/" + _escape(template) + "/" + method
        schema = None
        if body is not None:
            body = self._deref(body)
            if "application/json" in body.get("content", {}):
                schema = f"{SPEC_URI}#{pointer}/requestBody/content/application~1json/schema"
                if "$ref" in op["requestBody"]:
                    ref = op["requestBody"]["$ref"].removeprefix("#")
                    schema = f"{SPEC_URI}#{ref}/content/application~1json/schema"
        regex = "".join(
            ("(?P<" + part[1:-1].replace("-", "_") + ">" + (
                ".+" if _multi(params, part[1:-1]) else "[^/]+") + ")")
            if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[^}]+\})", template)
        )  # fmt: skip
        operation = Operation(
            template, method.upper(), pointer, params, schema, bool(body and body.get("required"))
        )
        return re.compile(regex + "$"), operation

    def _deref(self, node: dict[str, Any]) -> dict[str, Any]:
        return self._pointer(node["$ref"]) if "$ref" in node else node

    def _pointer(self, ref: str) -> dict[str, Any]:
        found: Any = self.doc
        for part in ref.removeprefix("#/").split("/"):
            found = found[part.replace("~1", "/").replace("~0", "~")]
        return found  # type: ignore[no-any-return]

    def find(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation a request is for; the most literal template wins."""
        best: tuple[int, Operation, dict[str, str]] | None = None
        for regex, op in self.routes:
            if op.method != method:
                continue
            match = regex.match(path)
            if match:
                literal = len(re.sub(r"\{[^}]+\}", "", op.template))
                if best is None or literal > best[0]:
                    best = (literal, op, {k: unquote(v) for k, v in match.groupdict().items()})
        return None if best is None else (best[1], best[2])

    def check(self, method: str, path: str, query: str, body: bytes | None) -> list[str]:
        """What is wrong with this request, per the description; [] if nothing."""
        found = self.find(method, path)
        if found is None:
            return [f"{method} {path}: no such operation in GitHub's REST API"]
        op, values = found
        problems = []
        for (where, name), param in op.params.items():
            if where == "path":
                problems += self._value(
                    op, f"path parameter {name}", param, values.get(name.replace("-", "_"))
                )
        declared = {name for (where, name) in op.params if where == "query"}
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name not in declared:
                problems.append(f"{op.key}: query parameter {name!r} is not declared")
            else:
                problems += self._value(
                    op, f"query parameter {name}", op.params[("query", name)], value
                )
        problems += self._body(op, body)
        return problems

    def _value(self, op: Operation, what: str, param: dict[str, Any], raw: str | None) -> list[str]:
        if raw is None:
            return [f"{op.key}: {what} is missing"] if param.get("required") else []
        schema = param.get("schema", {})
        value: Any = raw
        kind = schema.get("type")
        try:
            if kind == "integer":
                value = int(raw)
            elif kind == "boolean":
                value = {"true": True, "false": False}[raw]
        except (ValueError, KeyError):
            return [f"{op.key}: {what}={raw!r} is not a {kind}"]
        return [f"{op.key}: {what}: {e.message}" for e in self._errors(schema, value)]

    def _body(self, op: Operation, body: bytes | None) -> list[str]:
        if not body:
            return [f"{op.key}: the request body is required"] if op.body_required else []
        if op.body_schema is None:
            return [f"{op.key}: takes no request body"]
        try:
            data = json.loads(body)
        except ValueError:
            return [f"{op.key}: the body is not JSON"]
        errors = self._errors({"$ref": op.body_schema}, data)
        return [f"{op.key}: body{_where(e)}: {e.message}" for e in errors]

    def _errors(self, schema: dict[str, Any], value: Any) -> list[jsonschema.ValidationError]:
        validator = jsonschema.Draft4Validator(schema, registry=self.registry)
        return sorted(validator.iter_errors(value), key=lambda e: list(e.path))


METHODS = ("get", "post", "put", "patch", "delete")


def _escape(template: str) -> str:
    return template.replace("~", "~0").replace("/", "~1")


def _multi(params: dict[tuple[str, str], dict[str, Any]], name: str) -> bool:
    return bool(params.get(("path", name), {}).get("x-multi-segment"))


def _where(error: jsonschema.ValidationError) -> str:
    return "".join(f"[{p!r}]" for p in error.absolute_path)


def _nullable_to_null(node: Json) -> Json:
    """OpenAPI 3.0's `nullable: true` as JSON Schema says it: `null` is one more type."""
    if isinstance(node, list):
        return [_nullable_to_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _nullable_to_null(value) for key, value in node.items()}
    if out.get("nullable") is True:
        del out["nullable"]
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def spec() -> Spec:
    """Loaded once per test session (about a second)."""
    return Spec(SPEC)


@dataclass(frozen=True)
class AppKey:
    """The App GitHub knows: its id and the public half of its private key (PEM)."""

    app_id: int
    public_key: bytes


JWT_CALLS = {
    "GET /repos/{owner}/{repo}/installation",
    "POST /app/installations/{installation_id}/access_tokens",
    "GET /app/hook/deliveries",
    "POST /app/hook/deliveries/{delivery_id}/attempts",
}
TOKEN_LIFETIME_S = 3600


@dataclass
class GitHubApi:
    """The fake. `refuse[op_key] = status` makes an operation fail as GitHub would (403 for a
    token without the permission, 500); `down = True` drops every API connection unanswered;
    `padding` makes answers too large; `stall` holds answers until it is set."""

    token: str | None = None
    githost: GitHost | None = None
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    hooks: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    refuse: dict[str, int] = field(default_factory=dict)
    down: bool = False
    padding: int = 0  # bytes of padding added to every answer (a host sending too much)
    stall: threading.Event | None = None  # when set, answers wait for it (a host hanging)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))
    app: AppKey | None = None
    installations: dict[str, int] = field(default_factory=dict)  # OWNER/NAME -> id
    minted: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> what it may do
    jwts: list[dict[str, Any]] = field(default_factory=list)  # the claims of every good JWT
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    hook_deliveries: list[dict[str, Any]] = field(default_factory=list)  # newest first
    attempts: list[int] = field(default_factory=list)  # redeliveries asked for
    redelivery_code: int = 202  # what dockyard "answers" a redelivery, in the log

    def start(self) -> GitHubApi:
        spec()  # loaded before the first request, not inside one
        fake = self
        githost = self.githost or GitHost(Path("/nonexistent"))

        class Handler(_ApiHandler):
            api = fake

        Handler.githost = githost
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def api_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{PREFIX}"

    def states(self, sha: str, context: str | None = None) -> list[str]:
        with self.lock:
            return [s["state"] for s in self.statuses.get(sha, [])
                    if context is None or s["context"] == context]  # fmt: skip

    def last_status(self, sha: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.statuses.get(sha, [])
            return dict(found[-1]) if found else None

    def runs(self, sha: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(r) for r in self.check_runs.values() if r["head_sha"] == sha]

    def log_delivery(self, guid: str, status_code: int, when: datetime | None = None) -> int:
        """An entry of the App webhook's delivery log, as GitHub records one (newest first)."""
        entry_id = next(self.ids)
        entry = {
            "id": entry_id,
            "guid": guid,
            "delivered_at": (when or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
            "redelivery": False,
            "duration": 0.1,
            "status": "OK" if 200 <= status_code < 400 else "Invalid HTTP Response: 503",
            "status_code": status_code,
            "event": "push",
            "action": None,
            "installation_id": None,
            "repository_id": None,
        }
        with self.lock:
            self.hook_deliveries.insert(0, entry)
        return entry_id

    # authentication ---------------------------------------------------------------------

    def denied(self, key: str | None, values: dict[str, str], header: str | None) -> str | None:
        """Why GitHub would answer 401, or None."""
        if self.app is None:
            if self.token is not None and header != f"Bearer {self.token}":
                return "Bad credentials"
            return None
        bearer = (header or "").removeprefix("Bearer ").strip()
        if key in JWT_CALLS:
            return self._check_jwt(bearer)
        repo = f"{values.get('owner')}/{values.get('repo')}".lower()
        if self.token is not None and bearer == self.token:
            return None
        return None if self.token_ok(bearer, repo) else "Bad credentials"

    def _check_jwt(self, token: str) -> str | None:
        assert self.app is not None
        try:
            claims = jwt.decode(
                token, self.app.public_key, algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]}, leeway=0,
            )  # fmt: skip
        except jwt.PyJWTError as exc:
            return f"A JSON web token could not be decoded ({exc})"
        now = int(time.time())
        if str(claims["iss"]) != str(self.app.app_id):
            return "Integration not found"
        if claims["iat"] > now + 1 or claims["exp"] - claims["iat"] > 600:
            return "'Expiration time' claim ('exp') is too far in the future"
        with self.lock:
            self.jwts.append(claims)
        return None

    def token_ok(self, token: str, repo: str | None) -> bool:
        with self.lock:
            grant = self.minted.get(token)
        if grant is None or grant["expires"] <= time.time():
            return False
        return repo is None or repo in grant["repos"]

    # the operations dockyard uses -------------------------------------------------------

    def handle(self, op: Operation, values: dict[str, str], body: Json) -> tuple[Any, ...]:
        refused = self.refuse.get(op.key)
        if refused:
            return refused, {"message": "Resource not accessible by personal access token"}
        handler = HANDLERS.get(op.key)
        if handler is None:
            return 501, {"message": f"the fake does not implement {op.key}"}
        with self.lock:
            return handler(self, values, body)

    def _repo(self, values: dict[str, str]) -> str:
        return f"{values['owner']}/{values['repo']}"

    def _has_commit(self, repo: str, sha: str) -> bool:
        """GitHub answers 422 for a status on a commit it does not have."""
        if self.githost is None:
            return True
        path = self.githost.root / f"{repo}.git"
        proc = subprocess.run(
            ["git", "-C", str(path), "cat-file", "-e", f"{sha}^{{commit}}"],
            capture_output=True, check=False,
        )  # fmt: skip
        return proc.returncode == 0

    def create_status(self, values: dict[str, str], body: Json) -> tuple[int, Json]:
        sha = values["sha"]
        if not self._has_commit(self._repo(values), sha):
            return 422, {"message": f"No commit found for SHA: {sha}"}
        status = {
            "id": next(self.ids),
            "state": body["state"],
            "description": body.get("description"),
            "target_url": body.get("target_url"),
            "context": body.get("context", "default"),
        }
        self.statuses.setdefault(sha, []).append({**status, "received_at": time.time()})
        return 201, {**status, "url": f"{PREFIX}/statuses/{sha}", "node_id": "S"}

    def list_comments(self, values: dict[str, str], _body: Json) -> tuple[int, Json]:
        return 200, [dict(c) for c in self.comments.get(int(values["issue_number"]), [])]

    def create_comment(self, values: dict[str, str], body: Json) -> tuple[int, Json]:
        number = int(values["issue_number"])
        comment = {"id": next(self.ids), "body": body["body"], "edits": 0, "issue": number}
        self.comments.setdefault(number, []).append(comment)
        return 201, dict(comment)

    def edit_comment(self, values: dict[str, str], body: Json) -> tuple[int, Json]:
        wanted = int(values["comment_id"])
        for comment in itertools.chain.from_iterable(self.comments.values()):
            if comment["id"] == wanted:
                comment["body"] = body["body"]
                comment["edits"] += 1
                return 200, dict(comment)
        return 404, {"message": "Not Found"}

    def create_hook(self, values: dict[str, str], body: Json) -> tuple[int, Json]:
        hook = {"id": next(self.ids), "repo": self._repo(values), **copy.deepcopy(body)}
        self.hooks.append(hook)
        config = {k: v for k, v in body.get("config", {}).items() if k != "secret"}
        events = body.get("events", ["push"])
        answer = {"id": hook["id"], "name": "web", "events": events, "config": config}
        return 201, {**answer, "type": "Repository", "active": body.get("active", True)}

    def delete_hook(self, values: dict[str, str], _body: Json) -> tuple[int, Json]:
        before = len(self.hooks)
        self.hooks[:] = [h for h in self.hooks if h["id"] != int(values["hook_id"])]
        return (204, None) if len(self.hooks) < before else (404, {"message": "Not Found"})

    def installation(self, values: dict[str, str], _body: Json) -> tuple[int, Json]:
        found = self.installations.get(self._repo(values))
        if found is None:
            return 404, {"message": "Not Found"}
        assert self.app is not None
        return 200, {"id": found, "app_id": self.app.app_id, "account": {"login": values["owner"]}}

    def access_token(self, values: dict[str, str], body: Json) -> tuple[int, Json]:
        installation = int(values["installation_id"])
        covered = [r for r, i in self.installations.items() if i == installation]
        if not covered:
            return 404, {"message": "Not Found"}
        owner = covered[0].partition("/")[0]
        names = (body or {}).get("repositories")
        repos = {f"{owner}/{n}".lower() for n in names} if names else {r.lower() for r in covered}
        if not repos <= {r.lower() for r in covered}:
            return 422, {"message": "There is at least one repository that does not exist"}
        token = f"ghs_{secrets.token_hex(16)}"
        expires = time.time() + TOKEN_LIFETIME_S
        self.minted[token] = {"installation": installation, "repos": repos, "expires": expires}
        when = datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
        return 201, {"token": token, "expires_at": when, "repository_selection": "selected"}

    def create_check_run(self, values: dict[str, str], body: Json) -> tuple[int, Json]:
        if not self._has_commit(self._repo(values), body["head_sha"]):
            return 422, {"message": "No commit found for SHA"}
        run = {"id": next(self.ids), "repo": self._repo(values), "history": [], **body}
        run.setdefault("status", "queued")
        run["history"] = [run["status"]]
        self.check_runs[run["id"]] = run
        return 201, {k: v for k, v in run.items() if k != "history"}

    def update_check_run(self, values: dict[str, str], body: Json) -> tuple[int, Json]:
        run = self.check_runs.get(int(values["check_run_id"]))
        if run is None:
            return 404, {"message": "Not Found"}
        run.update(body)
        run["history"].append(run["status"])
        return 200, {k: v for k, v in run.items() if k != "history"}

    def list_deliveries(
        self, _values: dict[str, str], query: dict[str, str]
    ) -> tuple[int, Json, dict[str, str]]:
        per_page = int(query.get("per_page", "30"))
        start = int(query.get("cursor", "0"))
        page = [dict(d) for d in self.hook_deliveries[start : start + per_page]]
        more = start + per_page < len(self.hook_deliveries)
        nxt = f"{PREFIX}/app/hook/deliveries?per_page={per_page}&cursor={start + per_page}"
        return 200, page, {"Link": f'<{nxt}>; rel="next"'} if more else {}

    def redeliver(self, values: dict[str, str], _body: Json) -> tuple[int, Json]:
        wanted = int(values["delivery_id"])
        original = next((d for d in self.hook_deliveries if d["id"] == wanted), None)
        if original is None:
            return 404, {"message": "Not Found"}
        self.attempts.append(wanted)
        code = self.redelivery_code
        again = {**original, "id": next(self.ids), "redelivery": True, "status_code": code,
                 "status": "OK" if 200 <= code < 400 else "Invalid HTTP Response: 503",
                 "delivered_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}  # fmt: skip
        self.hook_deliveries.insert(0, again)
        return 202, {}


HANDLERS = {
    "POST /repos/{owner}/{repo}/statuses/{sha}": GitHubApi.create_status,
    "GET /repos/{owner}/{repo}/issues/{issue_number}/comments": GitHubApi.list_comments,
    "POST /repos/{owner}/{repo}/issues/{issue_number}/comments": GitHubApi.create_comment,
    "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}": GitHubApi.edit_comment,
    "POST /repos/{owner}/{repo}/hooks": GitHubApi.create_hook,
    "DELETE /repos/{owner}/{repo}/hooks/{hook_id}": GitHubApi.delete_hook,
    "GET /repos/{owner}/{repo}/installation": GitHubApi.installation,
    "POST /app/installations/{installation_id}/access_tokens": GitHubApi.access_token,
    "POST /repos/{owner}/{repo}/check-runs": GitHubApi.create_check_run,
    "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}": GitHubApi.update_check_run,
    "GET /app/hook/deliveries": GitHubApi.list_deliveries,
    "POST /app/hook/deliveries/{delivery_id}/attempts": GitHubApi.redeliver,
}
QUERY_HANDLERS = {"GET /app/hook/deliveries"}  # given the query instead of a body


class _ApiHandler(_Handler):
    """`/api/v3/…` is the REST API; anything else is the git host's (when there is one)."""

    api: GitHubApi

    def do_GET(self) -> None:
        self._route(super().do_GET)

    def do_POST(self) -> None:
        self._route(super().do_POST)

    def do_PATCH(self) -> None:
        self._route(None)

    def do_DELETE(self) -> None:
        self._route(None)

    def _route(self, git: Any) -> None:
        parts = urlsplit(self.path)
        if not parts.path.startswith(PREFIX + "/"):
            if git is None or self.api.githost is None:
                self._answer(404, {"message": "Not Found"})
            else:
                git()
            return
        self._api(parts.path.removeprefix(PREFIX), parts.query)

    def _api(self, path: str, query: str) -> None:
        api = self.api
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_BODY)) if length else b""
        with api.lock:
            api.requests.append(f"{self.command} {path}")
        if api.down:
            self.close_connection = True
            self.connection.close()
            return
        known = spec().find(self.command, path)
        denied = api.denied(
            known[0].key if known else None, known[1] if known else {},
            self.headers.get("Authorization"),
        )  # fmt: skip
        if denied:
            self._answer(401, {"message": denied})
            return
        problems = spec().check(self.command, path, query, body)
        if body and "application/json" not in self.headers.get("Content-Type", ""):
            problems.append(f"{self.command} {path}: Content-Type is not application/json")
        if problems:
            with api.lock:
                api.violations.extend(problems)
            self._answer(404 if "no such operation" in problems[0] else 422,
                         {"message": "; ".join(problems)[:2000]})  # fmt: skip
            return
        op, values = spec().find(self.command, path) or (None, {})
        assert op is not None
        given = dict(parse_qsl(query)) if op.key in QUERY_HANDLERS else None
        result = api.handle(op, values, given if given is not None else (
            json.loads(body) if body else None))  # fmt: skip
        status, answer, headers = (*result, {}) if len(result) == 2 else result
        if api.stall is not None:
            api.stall.wait(30)
        if api.padding and isinstance(answer, dict):
            answer = {**answer, "padding": "x" * api.padding}
        self._answer(status, answer, headers)

    def _answer(self, status: int, answer: Json, headers: dict[str, str] | None = None) -> None:
        raw = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            base = f"http://127.0.0.1:{self.api.server.server_address[1]}"  # type: ignore[union-attr]
            self.send_header(name, value.replace(f"<{PREFIX}", f"<{base}{PREFIX}"))
        self.end_headers()
        self.wfile.write(raw)

    def _authorized(self) -> bool:
        """The git host's check, and as an App's GitHub, the installation tokens it minted."""
        if self.api.app is None:
            return super()._authorized()
        raw = self.headers.get("Authorization", "")
        try:
            user, _, token = base64.b64decode(raw.removeprefix("Basic ")).decode().partition(":")
        except ValueError:
            return False
        repo = urlsplit(self.path).path.lstrip("/").partition(".git")[0].lower()
        return user == "x-access-token" and self.api.token_ok(token, repo)


@contextmanager
def serving(**kw: Any) -> Iterator[GitHubApi]:
    """A started fake; at the end, the test fails if any request broke GitHub's description."""
    fake = GitHubApi(**kw).start()
    try:
        yield fake
    finally:
        fake.stop()
    assert fake.violations == [], fake.violations
