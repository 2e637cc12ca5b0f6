"""The server's logging: httpx's request lines (URLs that may hold credentials or what users
typed into apps) stay out of the log unless the server logs at DEBUG."""

import logging

import pytest

from dockyard import logsetup


@pytest.fixture(autouse=True)
def _restore() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    httpx_level = logging.getLogger("httpx").level
    yield None
    root.handlers[:], root.level = handlers, level
    logging.getLogger("httpx").setLevel(httpx_level)


def test_httpx_request_lines_are_not_logged_at_info() -> None:
    logsetup.configure("info")
    assert logging.getLogger().isEnabledFor(logging.INFO)
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)


def test_debug_shows_them() -> None:
    logsetup.configure("debug")
    assert logging.getLogger("httpx").isEnabledFor(logging.INFO)
