"""A small HTTP client for the JSON API that turns failures into one-line errors."""

from typing import Any

import httpx

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
        headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    @property
    def ws(self) -> str:
        return f"/api/v1/workspaces/{self.target.workspace}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(
                f"cannot reach the dockyard server at {self.server} ({exc.__class__.__name__});"
                " is `dockyard server` running there? check --server / DOCKYARD_SERVER"
            ) from exc
        if response.status_code >= 400:
            raise _error(response)
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=body or {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def _error(response: httpx.Response) -> DockyardError:
    try:
        message = response.json().get("error") or response.text
    except ValueError:
        message = response.text.strip() or response.reason_phrase
    cls = ERRORS.get(response.status_code, DockyardError)
    return cls(f"{message} (HTTP {response.status_code})")
