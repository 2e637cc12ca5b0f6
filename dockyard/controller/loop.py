"""A background loop that does one step, then sleeps until its next step is due or someone
wakes it. The runner, the scheduler and the sweep are such loops."""

import logging
import threading

log = logging.getLogger(__name__)


class Loop:
    name = "loop"

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> float:
        """One round of work; returns how many seconds to sleep before the next one."""
        raise NotImplementedError

    def on_stop(self) -> None:
        """Called once the thread has ended."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.on_stop()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception:  # a loop must survive anything one round throws at it
                log.exception("loop step failed", extra={"action": self.name})
                wait = 1.0
            self._wake.wait(wait)
            self._wake.clear()
