"""`X-Hub-Signature-256` checks: pure, against GitHub's documented test vector."""

from dockyard.webhooks import signature

# docs.github.com, "Validating webhook deliveries": secret "It's a Secret to Everybody",
# payload "Hello, World!"
GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_the_documented_example_signs_and_verifies() -> None:
    assert signature.sign(GITHUB_SECRET, GITHUB_BODY) == GITHUB_SIGNATURE
    assert signature.verify(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE)


def test_a_changed_body_secret_or_header_fails() -> None:
    assert not signature.verify(GITHUB_SECRET, GITHUB_BODY + b" ", GITHUB_SIGNATURE)
    assert not signature.verify(b"another secret", GITHUB_BODY, GITHUB_SIGNATURE)
    flipped = GITHUB_SIGNATURE[:-1] + ("0" if GITHUB_SIGNATURE[-1] != "0" else "1")
    assert not signature.verify(GITHUB_SECRET, GITHUB_BODY, flipped)


def test_missing_malformed_or_sha1_headers_fail() -> None:
    for header in (None, "", "sha256=", GITHUB_SIGNATURE[7:], "sha1=" + "0" * 40):
        assert not signature.verify(GITHUB_SECRET, GITHUB_BODY, header)
    assert not signature.verify(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE + "0" * 1000)
