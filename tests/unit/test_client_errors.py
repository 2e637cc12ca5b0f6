"""The CLI's client turns an API error body back into the error class with its `code`, so
commands branch on the code (docs/api.md), not on the message's wording."""

import json

from dockyard import errors
from dockyard.cli import client


def body(message: str, code: str) -> bytes:
    return json.dumps({"error": message, "code": code}).encode()


def test_the_code_comes_back_with_the_class() -> None:
    found = client._error(404, body("version abc is not reconciled (yet)", "not_reconciled"), "")
    assert isinstance(found, errors.NotFound)
    assert found.code == errors.NOT_RECONCILED
    assert found.message == "version abc is not reconciled (yet) (HTTP 404)"


def test_without_a_code_the_class_gives_it() -> None:
    found = client._error(403, json.dumps({"error": "no"}).encode(), "Forbidden")
    assert isinstance(found, errors.Forbidden) and found.code == "forbidden"


def test_a_body_that_is_not_json_is_the_message() -> None:
    found = client._error(502, b"Bad Gateway from the proxy", "Bad Gateway")
    assert type(found) is errors.DockyardError and found.code == "error"
    assert found.message == "Bad Gateway from the proxy (HTTP 502)"


def test_a_specific_code_stays_with_its_instance_only() -> None:
    assert errors.NotFound("x", code="not_reconciled").code == "not_reconciled"
    assert errors.NotFound("y").code == "not_found"
