"""GitHub Actions OIDC: is this JWT a job token from the configured issuer, for us?

A GitHub Actions job with `permissions: id-token: write` can ask GitHub for a JWT that names
its repository, ref, workflow and run, signed with a key GitHub publishes (its issuer's
`/.well-known/openid-configuration` → `jwks_uri`). `POST /api/v1/auth/github-oidc` exchanges
such a token for a short-lived deploy token (`usecases/github_oidc.py`), so a workflow deploys
without a stored secret.

Everything about the JWT is checked here, before any claim is believed: RS256 only (never
`none` or an HMAC algorithm, whose "key" would be the public key), a key id the issuer
publishes, the signature, `iss`, `aud` (the server's own audience), and `exp`/`nbf`/`iat`
against the controller's clock with a small leeway. Each refusal is one line with a stable
code, so a workflow's log says which check failed.

The JWKS is fetched over HTTPS (plain HTTP only on loopback, for tests and local issuers),
with timeouts, no redirects and a byte cap, from the issuer's own origin only, and cached for
`DOCKYARD_GITHUB_OIDC_JWKS_TTL`. A key id the cache does not know triggers one refetch (GitHub
rotates keys), at most once per `REFETCH_S`, so random key ids cannot make the server hammer
the issuer.
"""

import fnmatch
import ipaddress
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from jwt.algorithms import RSAAlgorithm

from dockyard.clock import Clock
from dockyard.errors import InvalidInput, Unauthorized, Unavailable

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
LEEWAY_S = 60
MAX_TOKEN_BYTES = 16 * 1024
MAX_DOCUMENT_BYTES = 256 * 1024
FETCH_TIMEOUT_S = 5.0
REFETCH_S = 60.0

# the refusal codes (`{"error", "code"}`; docs/api.md): a stable word per failed check
BAD_TOKEN = "oidc_bad_token"  # noqa: S105 (an error code)
BAD_ALGORITHM = "oidc_bad_algorithm"
UNKNOWN_KEY = "oidc_unknown_key"
BAD_SIGNATURE = "oidc_bad_signature"
ISSUER_MISMATCH = "oidc_issuer_mismatch"
WRONG_AUDIENCE = "oidc_wrong_audience"
EXPIRED = "oidc_expired"
NOT_YET_VALID = "oidc_not_yet_valid"
REPOSITORY_NOT_ALLOWED = "oidc_repository_not_allowed"
REF_NOT_ALLOWED = "oidc_ref_not_allowed"

REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
"""`OWNER/NAME` as GitHub allows names (fullmatch); links use it too (`usecases/github`)."""
REF = re.compile(r"^refs/[A-Za-z0-9._/*-]{1,245}$")


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified job token says about the job (GitHub's claim names)."""

    repository: str
    ref: str
    run_id: str
    workflow: str
    event_name: str
    subject: str

    @classmethod
    def of(cls, claims: dict[str, Any]) -> "Claims":
        def text(name: str) -> str:
            value = claims.get(name, "")
            return value if isinstance(value, str) else str(value)

        return cls(
            text("repository"),
            text("ref"),
            text("run_id"),
            text("workflow"),
            text("event_name"),
            text("sub"),
        )


def verify(
    token: str,
    key_for: Callable[[str], Any],
    issuer: str,
    audience: str,
    now: datetime,
) -> Claims:
    """The claims of `token` once every check passed; else `Unauthorized` with its code."""
    header = _header(token)
    key = key_for(header["kid"])
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            # times are checked against the controller's clock below
            options={
                "require": ["iss", "aud", "exp", "iat"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise _refuse(BAD_SIGNATURE, "the token's signature does not verify") from None
    except jwt.InvalidAudienceError:
        raise _refuse(
            WRONG_AUDIENCE,
            f"the token's audience is not this server's ({audience}); request the token"
            f" with audience={audience}",
        ) from None
    except jwt.InvalidIssuerError:
        raise _refuse(
            ISSUER_MISMATCH, f"the token was not issued by {issuer} (DOCKYARD_GITHUB_OIDC_ISSUER)"
        ) from None
    except jwt.PyJWTError as exc:
        raise _refuse(BAD_TOKEN, f"the token is not a valid job token: {exc}") from None
    _check_times(claims, now)
    return Claims.of(claims)


def _header(token: str) -> dict[str, Any]:
    if len(token) > MAX_TOKEN_BYTES:
        raise _refuse(BAD_TOKEN, f"the token is over {MAX_TOKEN_BYTES} bytes")
    try:
        header: dict[str, Any] = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _refuse(BAD_TOKEN, f"the token is not a JWT: {exc}") from None
    if header.get("alg") != ALGORITHM:
        raise _refuse(
            BAD_ALGORITHM, f"the token's algorithm is {header.get('alg')!r}; only RS256 is accepted"
        )
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise _refuse(BAD_TOKEN, "the token names no key id (kid)")
    return header


def _check_times(claims: dict[str, Any], now: datetime) -> None:
    at = now.timestamp()
    times = {name: claims.get(name) for name in ("exp", "nbf", "iat")}
    for name, value in times.items():
        if value is not None and not isinstance(value, int | float):
            raise _refuse(BAD_TOKEN, f"the token's {name} is not a number")
    if at >= float(times["exp"] or 0) + LEEWAY_S:
        raise _refuse(EXPIRED, "the token has expired; request a new one in the job")
    for name in ("nbf", "iat"):
        value = times[name]
        if value is not None and float(value) > at + LEEWAY_S:
            raise _refuse(NOT_YET_VALID, f"the token's {name} is in the future (clock skew?)")


def _refuse(code: str, message: str) -> Unauthorized:
    return Unauthorized(f"GitHub OIDC: {message}", code=code)


# rules ---------------------------------------------------------------------------------------
def check_repository(repository: str) -> str:
    """`OWNER/NAME` as GitHub spells names, lowercased (GitHub's names ignore case)."""
    if not REPOSITORY.fullmatch(repository):
        raise InvalidInput(f"{repository!r} is not a GitHub repository; use OWNER/NAME")
    return repository.lower()


def check_ref(ref: str) -> str:
    """A full ref (`refs/heads/main`, `refs/tags/v*`, `refs/pull/*/merge`)."""
    parts = ref.split("/")
    if not REF.match(ref) or "" in parts or ".." in parts or "**" in ref:
        raise InvalidInput(
            f"{ref!r} is not a full git ref; use e.g. refs/heads/main or refs/tags/v*"
            " (`*` matches within one path segment)"
        )
    return ref


def ref_matches(pattern: str, ref: str) -> bool:
    """`*` matches within one `/`-separated segment; everything else literally."""
    want, have = pattern.split("/"), ref.split("/")
    if len(want) != len(have):
        return False
    return all(
        fnmatch.fnmatchcase(part, glob.replace("[", "[[]"))
        for glob, part in zip(want, have, strict=True)
    )


# the issuer's keys ---------------------------------------------------------------------------
class Jwks:
    """The issuer's signing keys by key id, fetched from its discovery document and cached."""

    def __init__(self, issuer: str, ttl_s: float, clock: Clock) -> None:
        self.issuer = issuer.rstrip("/")
        self.ttl_s = ttl_s
        self.clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> Any:
        with self._lock:
            now = self.clock.monotonic()
            stale = self._fetched_at is None or now - self._fetched_at >= self.ttl_s
            recent = self._fetched_at is not None and now - self._fetched_at < REFETCH_S
            if stale or (kid not in self._keys and not recent):
                self._keys = self._fetch()
                self._fetched_at = now
            if kid not in self._keys:
                raise _refuse(UNKNOWN_KEY, f"the issuer {self.issuer} publishes no key {kid!r}")
            return self._keys[kid]

    def _fetch(self) -> dict[str, Any]:
        check_url(self.issuer, self.issuer)
        with httpx.Client(timeout=FETCH_TIMEOUT_S, follow_redirects=False) as client:
            config = _get_json(client, f"{self.issuer}/.well-known/openid-configuration")
            uri = config.get("jwks_uri")
            if not isinstance(uri, str):
                raise Unavailable(f"the issuer {self.issuer} names no jwks_uri")
            check_url(uri, self.issuer)
            keys = parse_jwks(_get_json(client, uri))
        log.info(
            "issuer keys fetched",
            extra={"action": "fetch_jwks", "issuer": self.issuer, "keys": sorted(keys)},
        )
        return keys


def parse_jwks(document: dict[str, Any]) -> dict[str, Any]:
    """RSA signing keys by key id; every other kind of key is left out."""
    keys: dict[str, Any] = {}
    entries = document.get("keys")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        if entry.get("use", "sig") != "sig" or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("alg", ALGORITHM) != ALGORITHM:
            continue
        try:
            keys[entry["kid"]] = RSAAlgorithm.from_jwk(entry)
        except (jwt.InvalidKeyError, ValueError, KeyError):
            log.warning("unusable issuer key", extra={"action": "fetch_jwks", "kid": entry["kid"]})
    return keys


def check_url(url: str, issuer: str) -> None:
    """HTTPS (HTTP only to a loopback host), on the issuer's own origin."""
    parts, home = urlsplit(url), urlsplit(issuer)
    if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(parts.hostname)):
        raise Unavailable(f"{url} is not https; DOCKYARD_GITHUB_OIDC_ISSUER must be https")
    if (parts.scheme, parts.netloc) != (home.scheme, home.netloc):
        raise Unavailable(f"the issuer's key URL {url} is not on the issuer's origin {issuer}")


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _get_json(client: httpx.Client, url: str) -> dict[str, Any]:
    try:
        with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise Unavailable(f"{url} answered HTTP {response.status_code}")
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise Unavailable(f"{url} sent over {MAX_DOCUMENT_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot fetch {url}: {exc}") from None
    try:
        document = json.loads(body)
    except ValueError:
        raise Unavailable(f"{url} did not send JSON") from None
    if not isinstance(document, dict):
        raise Unavailable(f"{url} did not send a JSON object")
    return document
