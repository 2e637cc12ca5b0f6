"""`dockyard login --github-oidc`: inside a GitHub Actions job, trade the job's OIDC token for
a short-lived dockyard token and hand it to the job's later steps.

GitHub's documented protocol: a job with `permissions: id-token: write` gets
`ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN`; a GET of that URL with
`&audience=<aud>` and the request token as bearer answers `{"value": "<JWT>"}`. The server
says which audience it wants (`GET /api/v1/auth/github-oidc`), the JWT is exchanged at
`POST /api/v1/auth/github-oidc`, and the dockyard token is masked in the job's log
(`::add-mask::`) before it is written to `$GITHUB_ENV` as `DOCKYARD_TOKEN`.
"""

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from dockyard.cli.client import Client
from dockyard.cli.config import Target
from dockyard.errors import InvalidInput, Unavailable

REQUEST_URL = "ACTIONS_ID_TOKEN_REQUEST_URL"
REQUEST_TOKEN = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105 (a variable's name)
MAX_ANSWER_BYTES = 64 * 1024
DOCKYARD_TOKEN = re.compile(r"^dy_[A-Za-z0-9_-]{20,100}$")
ENV_VALUE = re.compile(r"^[\x21-\x7e]{1,2048}$")  # printable, no spaces or newlines


@dataclass(frozen=True, slots=True)
class Exchanged:
    token: str
    role: str
    workspace: str
    expires_at: str
    name: str


def login(server: str, workspace: str, audience: str | None, timeout: float = 30.0) -> Exchanged:
    """The job's OIDC token, requested for the server's audience, exchanged for a token."""
    anonymous = Client(Target(server, None, workspace, True), timeout)
    audience = audience or anonymous.get("/api/v1/auth/github-oidc")["audience"]
    jwt = id_token(str(audience), timeout)
    data: dict[str, Any] = anonymous.post(
        "/api/v1/auth/github-oidc", {"token": jwt, "workspace": workspace}
    )
    token = str(data.get("token", ""))
    if not DOCKYARD_TOKEN.match(token):
        raise Unavailable(f"{server} answered the exchange without a dockyard token")
    return Exchanged(
        token, data["role"], data["workspace"], str(data["expires_at"]), str(data["name"])
    )


def id_token(audience: str, timeout: float) -> str:
    """GitHub's JWT for this job, with `audience` as its `aud`."""
    url, bearer = os.environ.get(REQUEST_URL), os.environ.get(REQUEST_TOKEN)
    if not url or not bearer:
        raise InvalidInput(
            f"{REQUEST_URL} / {REQUEST_TOKEN} are not set: run this inside a GitHub Actions job"
            " whose workflow grants `permissions: id-token: write`"
        )
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    request = urllib.request.Request(  # noqa: S310 (the runner's own URL)
        f"{url}{sep}{urllib.parse.urlencode({'audience': audience})}",
        headers={"Authorization": f"Bearer {bearer}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(MAX_ANSWER_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise Unavailable(f"GitHub did not give the job an OIDC token: {exc}") from None
    try:
        value = json.loads(body).get("value") if len(body) <= MAX_ANSWER_BYTES else None
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str) or not value:
        raise Unavailable("GitHub's OIDC token answer holds no token (`value`)")
    return value


def export(exchanged: Exchanged, server: str) -> Path | None:
    """Mask the token in the job's log, then give it (and the server and workspace) to the
    job's later steps through `$GITHUB_ENV`; None outside GitHub Actions."""
    path = os.environ.get("GITHUB_ENV")
    if not path:
        return None
    click.echo(f"::add-mask::{exchanged.token}")
    values = {
        "DOCKYARD_TOKEN": exchanged.token,
        "DOCKYARD_SERVER": server,
        "DOCKYARD_WORKSPACE": exchanged.workspace,
    }
    for name, value in values.items():
        if not ENV_VALUE.match(value):
            raise InvalidInput(f"{name} cannot be passed on through GITHUB_ENV: {value!r}")
    with open(path, "a", encoding="utf-8") as env:
        env.writelines(f"{name}={value}\n" for name, value in values.items())
    return Path(path)
