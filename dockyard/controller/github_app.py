"""Acting as a GitHub App (docs/github.md, "Linking with a GitHub App"): the App's JWT, and
installation tokens minted on demand and kept in memory until shortly before they expire.

A GitHub App has no long-lived token. It signs a short JWT with its private key (RS256;
`iat` 60 s in the past against clock drift, `exp` under GitHub's 10-minute maximum, `iss` the
App id) for the App's own calls — which installation covers a repository, its webhook's
delivery log — and trades that JWT for an installation token (one hour) for everything done
on the repository: fetching it over git, check runs, the pull request comment.

Tokens live only in this process's memory (`InstallationTokens`), never in the database or
logs; one is reused until `REFRESH_S` before its `expires_at`, so a fetch, a check run and a
comment of one processing share one token and a restart simply mints a new one.
"""

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dockyard.clock import Clock
from dockyard.controller import github_api
from dockyard.errors import InvalidInput

BACKDATE_S = 60
"""`iat` this far in the past: GitHub's clock and ours may differ (GitHub's advice)."""
LIFETIME_S = 540
"""`exp` this far after now; GitHub refuses a JWT that lives longer than 10 minutes."""
REFRESH_S = 300
"""An installation token is replaced this long before it expires (a long fetch or build
must not start with a token about to die)."""
MAX_KEY_BYTES = 16 * 1024
MAX_APP_ID = 2**53


@dataclass(frozen=True, slots=True)
class App:
    """A GitHub App as dockyard acts as it: its id, API and private key (clear, in memory)."""

    app_id: int
    api_url: str
    private_key: bytes = field(repr=False)  # PEM


def check_app_id(app_id: int) -> int:
    if not 0 < app_id < MAX_APP_ID:
        raise InvalidInput(f"--app-id {app_id} is not a GitHub App id (the App ID on its page)")
    return app_id


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The App's RSA private key from PEM; one-line errors that say where to get a good one."""
    fix = "use the .pem file GitHub gave (App settings > Private keys > Generate)"
    if not pem.strip() or len(pem) > MAX_KEY_BYTES:
        raise InvalidInput(f"the private key file is empty or over {MAX_KEY_BYTES} bytes: {fix}")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(
            f"the private key file is not a PEM private key ({first}): {fix}"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidInput(f"the private key is not an RSA key (Apps sign with RS256): {fix}")
    return key


def app_jwt(app: App, now: datetime) -> str:
    """The App's JWT at `now`: RS256, `iat` backdated, `exp` within 10 minutes, `iss`."""
    issued = int(now.timestamp())
    claims = {"iat": issued - BACKDATE_S, "exp": issued + LIFETIME_S, "iss": str(app.app_id)}
    return jwt.encode(claims, load_private_key(app.private_key), algorithm="RS256")


@dataclass(frozen=True, slots=True)
class JwtAuth:
    """`Authorization: Bearer <App JWT>`, a fresh JWT for each request."""

    app: App
    clock: Clock

    def authorization(self) -> str:
        return f"Bearer {app_jwt(self.app, self.clock.now())}"


def app_api(
    app: App, clock: Clock, transport: httpx.BaseTransport | None = None
) -> github_api.AppApi:
    return github_api.AppApi(app.api_url, JwtAuth(app, clock), transport=transport)


def repo_api(
    app: App, repo: str, clock: Clock, transport: httpx.BaseTransport | None = None
) -> github_api.GitHubApi:
    """`repo`'s client authenticated as the App itself (finding its installation)."""
    return github_api.GitHubApi(app.api_url, repo, JwtAuth(app, clock), transport=transport)


def find_installation(
    app: App, repo: str, clock: Clock, transport: httpx.BaseTransport | None = None
) -> int:
    """The installation of `app` that covers `repo` (`GET /repos/{o}/{r}/installation`)."""
    return repo_api(app, repo, clock, transport).installation()


@dataclass(frozen=True, slots=True)
class _Minted:
    token: str = field(repr=False)
    expires_at: datetime


class InstallationTokens:
    """Installation tokens by (API, App, installation, repository), minted when missing or
    within `REFRESH_S` of expiry. Thread-safe: one mint at a time per process (a mint is
    one request; the loops that ask are few)."""

    def __init__(self, clock: Clock, transport: httpx.BaseTransport | None = None) -> None:
        self.clock = clock
        self.transport = transport
        self._tokens: dict[tuple[str, int, int, str], _Minted] = {}
        self._lock = threading.Lock()
        self.minted = 0  # how many were minted (tests see the cache work)

    def token(self, app: App, installation_id: int, repo: str) -> str:
        key = (app.api_url, app.app_id, installation_id, repo.lower())
        with self._lock:
            now = self.clock.now()
            held = self._tokens.get(key)
            if held is not None and held.expires_at - timedelta(seconds=REFRESH_S) > now:
                return held.token
            api = app_api(app, self.clock, self.transport)
            token, expires = api.installation_token(installation_id, repo.partition("/")[2])
            self._tokens[key] = _Minted(token, parse_expiry(expires, now))
            self.minted += 1
            return token

    def forget(self, app: App) -> None:
        """Drop the App's tokens (its key was replaced)."""
        with self._lock:
            for key in [k for k in self._tokens if k[:2] == (app.api_url, app.app_id)]:
                del self._tokens[key]


def parse_expiry(value: str, now: datetime) -> datetime:
    """GitHub's `expires_at` (ISO 8601, `Z`); one that cannot be read counts as now + REFRESH_S
    + 1 minute, so the token is used once more and then replaced soon."""
    try:
        found = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        found = None
    if found is None or found.tzinfo is None:
        return now + timedelta(seconds=REFRESH_S + 60)
    return found
