"""GitHub App mode's pure parts: the App JWT's claims, private key checks, token expiry
parsing, the delivery log's paging cursor, which failed deliveries are asked again, and how
an outcome becomes a check run's conclusion and text."""

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dockyard.controller import github_api, github_app
from dockyard.controller.github_api import HookDelivery
from dockyard.errors import InvalidInput
from dockyard.webhooks import feedback, redelivery
from dockyard.webhooks.processing import Outcome

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def test_the_app_jwt_is_rs256_backdated_short_and_issued_by_the_app() -> None:
    token = github_app.app_jwt(github_app.App(123, "https://api.github.com", pem(KEY)), NOW)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(
        token, KEY.public_key(), algorithms=["RS256"], options={"verify_exp": False}
    )
    issued = int(NOW.timestamp())
    assert claims == {"iat": issued - 60, "exp": issued + 540, "iss": "123"}
    assert claims["exp"] - claims["iat"] <= 600  # GitHub's maximum


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"x" * 20_000, "over"),
        (b"-----BEGIN RSA PRIVATE KEY-----\nnot base64\n-----END RSA PRIVATE KEY-----\n", "PEM"),
        (pem(ec.generate_private_key(ec.SECP256R1())), "not an RSA key"),
    ],
)
def test_a_bad_private_key_is_one_line_naming_the_fix(data: bytes, words: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        github_app.load_private_key(data)
    message = refused.value.message
    assert words in message and "Generate" in message and "\n" not in message


def test_app_ids_must_be_positive() -> None:
    for bad in (0, -1, 2**60):
        with pytest.raises(InvalidInput, match="not a GitHub App id"):
            github_app.check_app_id(bad)


def test_expiry_is_read_as_github_writes_it_and_a_bad_one_is_short() -> None:
    assert github_app.parse_expiry("2026-03-01T13:00:00Z", NOW) == NOW + timedelta(hours=1)
    soon = github_app.parse_expiry("tomorrow", NOW)
    assert NOW < soon <= NOW + timedelta(seconds=github_app.REFRESH_S + 60)


def test_the_next_page_cursor_comes_from_the_link_header() -> None:
    link = (
        '<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12345>; rel="next",'
        ' <https://api.github.com/app/hook/deliveries?per_page=100>; rel="first"'
    )
    assert github_api.next_cursor(link) == "v1_12345"
    assert github_api.next_cursor('<https://x/?cursor=a>; rel="prev"') is None
    assert github_api.next_cursor("") is None


def delivery(n: int, guid: str, ok: bool) -> HookDelivery:
    return HookDelivery(n, guid, "2026-03-01T11:59:00Z", ok, False)


def test_only_failed_unstored_never_healed_guids_are_asked_newest_first() -> None:
    recent = [  # newest first, as GitHub lists them
        delivery(9, "a", False),
        delivery(8, "b", True),
        delivery(7, "b", False),
        delivery(6, "c", False),
        delivery(5, "a", False),
        delivery(4, "d", False),
    ]
    chosen = redelivery.to_redeliver(recent, stored={"c"})
    assert [(d.id, d.guid) for d in chosen] == [(9, "a"), (4, "d")]


def test_superseded_commits_are_neutral_and_failures_failure() -> None:
    head = "b" * 40
    done = Outcome(True, "deployed", head)
    assert feedback.conclusion("success", head, done) == "success"
    assert feedback.conclusion("success", "a" * 40, done) == "neutral"
    assert feedback.conclusion("failure", head, Outcome(False, "bad")) == "failure"


def test_long_markdown_is_cut_to_githubs_limit_and_says_so() -> None:
    text = "line\n" * 20_000
    out = github_api.cut(text, github_api.MAX_CHECK_TEXT)
    assert github_api.MAX_CHECK_TEXT - 10 < len(out) <= github_api.MAX_CHECK_TEXT
    assert out.endswith("the dashboard has it all)")
    assert github_api.cut("short", 10) == "short"
