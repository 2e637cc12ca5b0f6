"""Token roles and workspace limits (`Principal.require`) and token hashing."""

import hashlib

import pytest

from dockyard.controller import auth
from dockyard.errors import Forbidden

WS = 7
OTHER_WS = 8


def principal(role: str, workspace_id: int | None = None) -> auth.Principal:
    return auth.Principal(token_id=1, role=role, workspace_id=workspace_id)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("read", ["read"]),
        ("deploy", ["read", "deploy"]),
        ("admin", ["read", "deploy", "admin"]),
    ],
)
def test_a_role_allows_itself_and_every_lower_role(role: str, allowed: list[str]) -> None:
    who = principal(role)
    for needed in auth.ROLES:
        if needed in allowed:
            who.require(needed, WS)
        else:
            with pytest.raises(Forbidden, match=f"role '{role}'; the action needs '{needed}'"):
                who.require(needed, WS)


def test_an_unlimited_token_may_act_on_any_workspace_and_globally() -> None:
    who = principal("deploy")

    who.require("deploy", WS)
    who.require("deploy", OTHER_WS)
    who.require("read")


def test_a_limited_token_may_act_on_its_own_workspace() -> None:
    principal("deploy", WS).require("deploy", WS)
    principal("read", WS).require("read", WS)


def test_a_limited_token_may_not_touch_another_workspace() -> None:
    with pytest.raises(Forbidden, match="limited to another workspace"):
        principal("admin", WS).require("read", OTHER_WS)


def test_a_limited_token_may_not_do_workspace_independent_actions() -> None:
    with pytest.raises(Forbidden, match="limited to another workspace"):
        principal("admin", WS).require("admin")


def test_the_role_is_checked_before_the_workspace() -> None:
    with pytest.raises(Forbidden, match="the action needs 'deploy'"):
        principal("read", WS).require("deploy", OTHER_WS)


def test_hash_token_is_hex_sha256() -> None:
    token = "dy_test_admin_token_0123456789"

    digest = auth.hash_token(token)

    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert len(digest) == 64
    assert digest != auth.hash_token(token + "x")


def test_new_tokens_are_prefixed_unique_and_long() -> None:
    tokens = {auth.new_token() for _ in range(20)}

    assert len(tokens) == 20
    assert all(t.startswith(auth.TOKEN_PREFIX) and len(t) >= 40 for t in tokens)
