"""How the CLI reads a failed push: a lost race, a refusal, an oversized body, a lost answer."""

import pygit2
import pytest

from dockyard.cli import gitpush
from dockyard.errors import Conflict, InvalidInput, Unavailable

URL = "http://127.0.0.1:1/git/demo.git"


def callbacks(rejected: str | None, *messages: str) -> gitpush.Callbacks:
    found = gitpush.Callbacks("dy_token")
    found.rejected = rejected
    found.remote_messages = list(messages)
    return found


@pytest.mark.parametrize(
    ("rejected", "messages"),
    [
        ("failed to update ref", ["error: cannot lock ref 'refs/heads/main': is at 1 but 2\n"]),
        ("non-fast-forward", []),
        ("pre-receive hook declined", ["dockyard: push rejected: " + gitpush.RACE + "\n"]),
        ("failed to lock", []),
    ],
)
def test_every_lost_race_says_deploy_again(rejected: str, messages: list[str]) -> None:
    error = gitpush._rejection(callbacks(rejected, *messages))

    assert isinstance(error, Conflict)
    assert error.message == "another deploy landed first; run deploy again"


def test_a_refusal_by_the_hook_is_its_own_line() -> None:
    error = gitpush._rejection(
        callbacks("pre-receive hook declined", "dockyard: push rejected: invalid manifest: x\n")
    )

    assert isinstance(error, InvalidInput) and error.message == "push rejected: invalid manifest: x"


def test_an_oversized_push_names_the_setting() -> None:
    error = gitpush._git_error(
        pygit2.GitError("unexpected http status code: 413"), URL, callbacks(None)
    )

    assert isinstance(error, InvalidInput) and "DOCKYARD_MAX_PUSH_BYTES" in error.message


def test_a_broken_connection_may_have_landed() -> None:
    lost = gitpush._git_error(pygit2.GitError("unexpected EOF"), URL, callbacks(None))
    refused = gitpush._git_error(
        pygit2.GitError("failed to connect to 127.0.0.1"), URL, callbacks(None)
    )

    assert isinstance(lost, gitpush.Interrupted)
    assert isinstance(refused, Unavailable) and not isinstance(refused, gitpush.Interrupted)
