"""The server logs a garbage collection that held the interpreter long (every thread waited)."""

import gc
import logging

import pytest

from dockyard.web.asgi import _GcWatch


def test_a_slow_collection_is_logged_with_its_generation_and_length(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = _GcWatch()
    monkeypatch.setattr(_GcWatch, "SLOW_GC_S", 0.0)  # every collection counts as slow here
    gc.callbacks.append(watch)
    try:
        with caplog.at_level(logging.WARNING, logger="dockyard.web.asgi"):
            gc.collect(2)
    finally:
        gc.callbacks.remove(watch)
    [record] = [r for r in caplog.records if r.getMessage() == "slow garbage collection"]
    assert record.__dict__["generation"] == 2 and record.__dict__["ms"] >= 0


def test_a_quick_collection_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    watch = _GcWatch()
    with caplog.at_level(logging.WARNING, logger="dockyard.web.asgi"):
        watch("start", {"generation": 0})
        watch("stop", {"generation": 0, "collected": 0})
    assert not [r for r in caplog.records if r.getMessage() == "slow garbage collection"]
