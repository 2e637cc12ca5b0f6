"""A small HTTP client for the JSON API that turns failures into one-line errors.

It uses the standard library on purpose: every CLI command pays for its imports, and an
HTTP library with its own CLI and console dependencies costs more to import than a request
to the local server takes.
"""

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from dockyard.cli.config import Target
from dockyard.errors import (
    Conflict,
    DockyardError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
    Unavailable,
)

ERRORS: dict[int, type[DockyardError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidInput,
    503: Unavailable,
}


class Client:
    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        if not target.server:
            raise InvalidInput(
                "no server configured; run `dockyard login --server URL --token TOKEN`"
                " or set DOCKYARD_SERVER"
            )
        self.target = target
        self.server: str = target.server
        self.timeout = timeout

    @property
    def ws(self) -> str:
        return f"/api/v1/workspaces/{self.target.workspace}"

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        encoded = urllib.parse.urlencode(query, doseq=True)  # a list: the key repeated
        url = self.server + path + (f"?{encoded}" if query else "")
        request = urllib.request.Request(url, method=method)  # noqa: S310 (http(s) only)
        if self.target.token:
            request.add_header("Authorization", f"Bearer {self.target.token}")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, data, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _error(exc.code, exc.read(), exc.reason) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unavailable(
                f"cannot reach the dockyard server at {self.server} ({reason});"
                " is `dockyard server` running there? check --server / DOCKYARD_SERVER"
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body=body or {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def _error(status: int, payload: bytes, reason: str) -> DockyardError:
    """The server's `{"error": message, "code": code}` as the matching error class; callers
    branch on `.code` (docs/api.md), never on the message's wording."""
    code = None
    try:
        body = json.loads(payload)
        message = body.get("error") or payload.decode()
        code = body.get("code") if isinstance(body.get("code"), str) else None
    except (ValueError, AttributeError):
        message = payload.decode("utf-8", "replace").strip() or reason
    cls = ERRORS.get(status, DockyardError)
    return cls(f"{message} (HTTP {status})", code=code)
