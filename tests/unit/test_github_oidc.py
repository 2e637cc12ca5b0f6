"""GitHub Actions OIDC checks without a server: a job token signed with a locally generated
RSA key, verified with the controller's own `github_oidc.verify` at a fixed instant; the rules'
matching; and the issuer's JWKS parsed."""

from datetime import UTC, datetime
from typing import Any

import pytest

from dockyard.controller import github_oidc
from dockyard.controller.store.models import GithubOidcRule
from dockyard.controller.usecases import github_oidc as usecase
from dockyard.errors import DockyardError, Forbidden, InvalidInput, Unauthorized, Unavailable
from tests import oidc_issuer

AUDIENCE = "https://dockyard.example.com"
ISSUER = "https://token.actions.githubusercontent.com"
KEY = oidc_issuer.new_key()
OTHER_KEY = oidc_issuer.new_key()
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T = int(NOW.timestamp())


def key_for(kid: str) -> Any:
    if kid != oidc_issuer.KID:
        raise Unauthorized(f"no key {kid}", code=github_oidc.UNKNOWN_KEY)
    return KEY.public_key()


def token(key: Any = KEY, kid: str = oidc_issuer.KID, **overrides: Any) -> str:
    import jwt

    times = {"iat": T - 10, "nbf": T - 10, "exp": T + 300, "iss": ISSUER}
    claims = oidc_issuer.job_claims(ISSUER, AUDIENCE, **{**times, **overrides})
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def refused(jwt_text: str) -> DockyardError:
    with pytest.raises(Unauthorized) as caught:
        github_oidc.verify(jwt_text, key_for, ISSUER, AUDIENCE, NOW)
    assert "\n" not in caught.value.message
    return caught.value


def test_a_good_token_gives_the_jobs_claims() -> None:
    claims = github_oidc.verify(token(), key_for, ISSUER, AUDIENCE, NOW)

    assert claims.repository == "octo-org/octo-ws"
    assert claims.ref == "refs/heads/main"
    assert claims.run_id == "4242"
    assert claims.event_name == "push"


@pytest.mark.parametrize(
    ("overrides", "code", "words"),
    [
        ({"aud": "https://elsewhere.example.com"}, github_oidc.WRONG_AUDIENCE, "audience"),
        ({"iss": "https://evil.example.com"}, github_oidc.ISSUER_MISMATCH, "not issued by"),
        ({"exp": T - 61}, github_oidc.EXPIRED, "expired"),
        ({"nbf": T + 120}, github_oidc.NOT_YET_VALID, "nbf"),
        ({"iat": T + 120}, github_oidc.NOT_YET_VALID, "iat"),
        ({"exp": None}, github_oidc.BAD_TOKEN, "exp"),
        ({"exp": "tomorrow"}, github_oidc.BAD_TOKEN, "exp"),
    ],
)
def test_a_claim_out_of_bounds_is_refused_with_its_reason(
    overrides: dict[str, Any], code: str, words: str
) -> None:
    error = refused(token(**overrides))

    assert error.code == code
    assert words in error.message


def test_within_the_leeway_a_token_is_still_good() -> None:
    claims = github_oidc.verify(token(exp=T - 30, nbf=T + 30), key_for, ISSUER, AUDIENCE, NOW)

    assert claims.repository == "octo-org/octo-ws"


def test_a_token_signed_by_another_key_is_refused() -> None:
    assert refused(token(key=OTHER_KEY)).code == github_oidc.BAD_SIGNATURE


def test_a_key_id_the_issuer_does_not_publish_is_refused() -> None:
    assert refused(token(kid="rotated-away")).code == github_oidc.UNKNOWN_KEY


@pytest.mark.parametrize("alg", ["none", "HS256", "RS512", "ES256"])
def test_only_rs256_is_accepted(alg: str) -> None:
    header = {"alg": alg, "typ": "JWT", "kid": oidc_issuer.KID}
    claims = oidc_issuer.job_claims(ISSUER, AUDIENCE, iat=T, nbf=T, exp=T + 300)
    # an HMAC "signed" with the public key: the classic algorithm confusion
    from cryptography.hazmat.primitives import serialization

    pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = oidc_issuer.unsigned(header, claims, None if alg == "none" else pem)

    error = refused(forged)

    assert error.code == github_oidc.BAD_ALGORITHM
    assert repr(alg) in error.message


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * (github_oidc.MAX_TOKEN_BYTES + 1)])
def test_garbage_is_refused_as_a_bad_token(garbage: str) -> None:
    assert refused(garbage).code == github_oidc.BAD_TOKEN


def test_a_header_without_a_key_id_is_refused() -> None:
    import jwt

    claims = oidc_issuer.job_claims(ISSUER, AUDIENCE, iat=T, nbf=T, exp=T + 300)
    assert refused(jwt.encode(claims, KEY, algorithm="RS256")).code == github_oidc.BAD_TOKEN


@pytest.mark.parametrize(
    ("pattern", "ref", "matches"),
    [
        ("refs/heads/main", "refs/heads/main", True),
        ("refs/heads/main", "refs/heads/main2", False),
        ("refs/heads/main", "refs/heads/Main", False),
        ("refs/pull/*/merge", "refs/pull/17/merge", True),
        ("refs/pull/*/merge", "refs/pull/17/head", False),
        ("refs/heads/*", "refs/heads/feature/x", False),  # `*` stays within one segment
        ("refs/tags/v*", "refs/tags/v1.2.0", True),
        ("refs/heads/[a]", "refs/heads/a", False),  # brackets are literal
    ],
)
def test_ref_patterns(pattern: str, ref: str, matches: bool) -> None:
    assert github_oidc.ref_matches(pattern, ref) is matches


@pytest.mark.parametrize(
    "ref", ["main", "refs/heads/", "refs//x", "refs/heads/../x", "refs/heads/a b", "refs/**"]
)
def test_a_ref_that_is_not_a_full_ref_is_refused(ref: str) -> None:
    with pytest.raises(InvalidInput, match="not a full git ref"):
        github_oidc.check_ref(ref)


def test_repositories_are_owner_slash_name_and_compared_lowercase() -> None:
    assert github_oidc.check_repository("Octo-Org/Octo.WS") == "octo-org/octo.ws"
    for bad in ("octo", "octo/ws/x", "-octo/ws", "octo/"):
        with pytest.raises(InvalidInput):
            github_oidc.check_repository(bad)


def rule(repository: str, ref: str, role: str = "deploy") -> GithubOidcRule:
    return GithubOidcRule(repository=repository, ref=ref, role=role)


def claims(repository: str = "Octo-Org/octo-ws", ref: str = "refs/heads/main") -> Any:
    return github_oidc.Claims(repository, ref, "1", "wf", "push", "sub")


def test_the_best_role_of_the_matching_rules_is_given() -> None:
    rules = [
        rule("octo-org/octo-ws", "refs/heads/*", "read"),
        rule("octo-org/octo-ws", "refs/heads/main", "deploy"),
    ]

    assert usecase.allowed_role(rules, claims(), "ws") == "deploy"
    assert usecase.allowed_role(rules, claims(ref="refs/heads/dev"), "ws") == "read"


def test_no_rule_for_the_repository_or_the_ref_is_refused_with_its_reason() -> None:
    rules = [rule("octo-org/octo-ws", "refs/heads/main")]

    with pytest.raises(Forbidden) as other_repo:
        usecase.allowed_role(rules, claims(repository="evil/octo-ws"), "ws")
    with pytest.raises(Forbidden) as other_ref:
        usecase.allowed_role(rules, claims(ref="refs/heads/dev"), "ws")

    assert other_repo.value.code == github_oidc.REPOSITORY_NOT_ALLOWED
    assert "allow-github-oidc ws --repo evil/octo-ws" in other_repo.value.message
    assert other_ref.value.code == github_oidc.REF_NOT_ALLOWED
    assert "allowed: refs/heads/main" in other_ref.value.message


def test_a_long_token_name_is_cut_to_the_column() -> None:
    long = claims(ref="refs/heads/" + "x" * 200)

    name = usecase.token_name(long)

    assert len(name) == usecase.NAME_LENGTH and name.startswith("github-oidc:Octo-Org/octo-ws@")


def test_the_jwks_keeps_rsa_signing_keys_only() -> None:
    import json

    from jwt.algorithms import RSAAlgorithm

    jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    document = {
        "keys": [
            {**jwk, "kid": "a", "use": "sig", "alg": "RS256"},
            {**jwk, "kid": "enc", "use": "enc"},
            {**jwk, "kid": "hs", "alg": "HS256"},
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            "not a key",
        ]
    }

    assert set(github_oidc.parse_jwks(document)) == {"a"}
    assert github_oidc.parse_jwks({"keys": "nope"}) == {}


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://token.actions.githubusercontent.com/.well-known/jwks", True),
        ("http://token.actions.githubusercontent.com/.well-known/jwks", False),
        ("https://elsewhere.example.com/.well-known/jwks", False),
    ],
)
def test_the_key_url_must_be_https_on_the_issuers_origin(url: str, ok: bool) -> None:
    if ok:
        github_oidc.check_url(url, ISSUER)
    else:
        with pytest.raises(Unavailable):
            github_oidc.check_url(url, ISSUER)


def test_plain_http_is_allowed_on_loopback_only() -> None:
    github_oidc.check_url("http://127.0.0.1:9/.well-known/jwks", "http://127.0.0.1:9")
    with pytest.raises(Unavailable, match="not https"):
        github_oidc.check_url("http://10.0.0.1:9/.well-known/jwks", "http://10.0.0.1:9")
