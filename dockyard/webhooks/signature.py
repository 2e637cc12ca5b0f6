"""`X-Hub-Signature-256`: HMAC-SHA256 of the raw request body with the link's secret.

Checked over the bytes exactly as received, before anything parses them: a body that fails
here is never read as JSON. The comparison is constant-time (`hmac.compare_digest`).
"""

import hashlib
import hmac

HEADER = "X-Hub-Signature-256"
PREFIX = "sha256="
MAX_HEADER = len(PREFIX) + 64


def sign(secret: bytes, body: bytes) -> str:
    """The header value GitHub sends for `body` (what the tests sign with)."""
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret`."""
    if not header or len(header) > MAX_HEADER or not header.startswith(PREFIX):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode("latin-1"))
