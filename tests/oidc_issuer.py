"""A GitHub Actions OIDC issuer on loopback, for tests: a locally generated RSA key, its JWKS
and discovery document served by a real HTTP server thread, and the runner's token request
endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL`), which mints a job token for the audience asked.

The claims follow GitHub's documented job token (repository, ref, run_id, workflow, …)."""

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

KID = "test-key-1"
REQUEST_TOKEN = "runner-request-token-0123456789"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def job_claims(issuer: str, audience: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": "repo:octo-org/octo-ws:ref:refs/heads/main",
        "repository": "octo-org/octo-ws",
        "repository_owner": "octo-org",
        "ref": "refs/heads/main",
        "ref_type": "branch",
        "run_id": "4242",
        "workflow": "dockyard",
        "event_name": "push",
        "jti": f"jti-{now}",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 300,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def unsigned(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A JWT made by hand: `alg: none` (no signature) or an HMAC one keyed with `secret`."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps(header).encode()) + "." + part(json.dumps(claims).encode())
    if secret is None:
        return head + "."
    return head + "." + part(hmac.new(secret, head.encode(), hashlib.sha256).digest())


class Issuer:
    def __init__(self) -> None:
        self.key = new_key()
        self.claims: dict[str, Any] = {}  # overrides for the runner's token endpoint
        self.requests: list[str] = []  # paths asked, for the tests' checks
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def request_url(self) -> str:
        """What the runner puts in ACTIONS_ID_TOKEN_REQUEST_URL (it carries a query)."""
        return f"{self.url}/_apis/token?api-version=2.0"

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=KID, use="sig", alg="RS256")
        return {"keys": [jwk]}

    def mint(
        self,
        audience: str,
        key: rsa.RSAPrivateKey | None = None,
        kid: str = KID,
        **overrides: Any,
    ) -> str:
        claims = job_claims(self.url, audience, **overrides)
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                issuer.requests.append(url.path)
                if url.path == "/.well-known/openid-configuration":
                    self._json({"issuer": issuer.url, "jwks_uri": f"{issuer.url}/.well-known/jwks"})
                elif url.path == "/.well-known/jwks":
                    self._json(issuer.jwks())
                elif url.path == "/_apis/token":
                    self._token(parse_qs(url.query))
                else:
                    self._json({"message": "Not Found"}, 404)

            def _token(self, query: dict[str, list[str]]) -> None:
                if self.headers.get("Authorization") != f"Bearer {REQUEST_TOKEN}":
                    self._json({"message": "Bad credentials"}, 401)
                    return
                if query.get("api-version") != ["2.0"] or len(query.get("audience", [])) != 1:
                    self._json({"message": "bad query"}, 400)
                    return
                audience = query["audience"][0]
                self._json({"count": 1, "value": issuer.mint(audience, **issuer.claims)})

            def _json(self, data: dict[str, Any], status: int = 200) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@contextmanager
def running() -> Iterator[Issuer]:
    issuer = Issuer()
    issuer.thread.start()
    try:
        yield issuer
    finally:
        issuer.server.shutdown()
        issuer.server.server_close()
