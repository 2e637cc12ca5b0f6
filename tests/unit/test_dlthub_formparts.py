"""The client's multipart uploads, read in memory (httpx encodes them as the client does)."""

import httpx
import pytest

from dockyard.compat.dlthub import formparts
from dockyard.errors import InvalidInput


def encoded(files: dict[str, tuple[str, bytes, str]]) -> tuple[str, bytes]:
    request = httpx.Request("POST", "http://x/", files=files)
    return request.headers["content-type"], request.read()


def test_the_clients_two_parts_come_back_whole() -> None:
    package = bytes(range(256)) * 5000  # binary, with CRLFs and dashes inside
    ctype, body = encoded(
        {
            "file": ("workspace.tar.gz", package, "application/x-tar"),
            "requirements_file": (
                "requirements.json",
                b'{"engine": 2}',
                "application/json",
            ),
        }
    )
    got = formparts.parts(ctype, body)
    assert got == {"file": package, "requirements_file": b'{"engine": 2}'}


def test_too_many_parts_are_refused() -> None:
    ctype, body = encoded({f"p{i}": (f"{i}", b"x", "text/plain") for i in range(6)})
    with pytest.raises(InvalidInput, match="at most 4 parts"):
        formparts.parts(ctype, body)


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("application/json", b"{}"),
        ("multipart/form-data", b"--x\r\n"),
    ],
)
def test_what_is_not_a_form_upload_is_refused(ctype: str, body: bytes) -> None:
    with pytest.raises(InvalidInput, match="multipart/form-data with a boundary"):
        formparts.parts(ctype, body)


def test_a_broken_body_is_refused_in_one_line() -> None:
    with pytest.raises(InvalidInput, match="not valid multipart/form-data"):
        formparts.parts("multipart/form-data; boundary=abc", b"--abc\r\nno-colon-header\r\n\r\n")
