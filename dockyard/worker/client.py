"""The server's worker API as calls: JSON in, JSON out, bearer token. Transport errors are
retried (the server may be restarting); an HTTP error answer raises `Refused` with its
status and body, for the agent to act on (409: not held any more, stale incarnation)."""

import logging
import time
from typing import Any

import httpx

from dockyard.errors import DockyardError

log = logging.getLogger(__name__)
RETRY_S = 1.0


class Refused(DockyardError):
    """The server answered an error status."""

    def __init__(self, status: int, body: dict[str, Any], path: str) -> None:
        message = str(body.get("error") or body.get("detail") or body)
        super().__init__(f"{path}: {status} {message}", str(body.get("code") or "refused"))
        self.status = status
        self.body = body


class WorkerClient:
    def __init__(self, server: str, token: str, attempts: int = 30) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.attempts = attempts
        self._http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, read=60.0),
        )

    def close(self) -> None:
        self._http.close()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, json=body)

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params=params)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"/api/v1/worker{path}"
        for attempt in range(self.attempts):
            try:
                answer = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt + 1 == self.attempts:
                    raise DockyardError(
                        f"the server {self.server} does not answer ({exc}); check --server"
                    ) from exc
                log.warning(
                    "server unreachable, retrying",
                    extra={"action": "worker_call", "path": path, "error": str(exc)},
                )
                time.sleep(RETRY_S)
                continue
            if answer.status_code >= 400:
                try:
                    body = answer.json()
                except ValueError:
                    body = {"error": answer.text[:500]}
                raise Refused(answer.status_code, body if isinstance(body, dict) else {}, path)
            return answer.json()
        raise AssertionError("unreachable")
