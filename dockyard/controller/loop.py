"""A background loop that does one step, then sleeps until its next step is due or someone
wakes it. The runner, the scheduler and the sweep are such loops.

A loop never dies. A step that fails because the database is away (PostgreSQL restarting,
refusing connections, an administrator's shutdown) is an outage, not a bug: the loop says so
once, retries with a short backoff (at most `BACKOFF_MAX_S`) and says once more when the
database is back. The engine checks pooled connections before use (`pool_pre_ping`), so the
connections a restart broke are dropped and re-opened by the retried step. Any other failure
is logged with its traceback and retried after a second.
"""

import logging
import threading

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger(__name__)
BACKOFF_S = (0.25, 0.5, 1.0, 2.0)  # between retries during an outage, the last one repeated
BACKOFF_MAX_S = BACKOFF_S[-1]
AFTER_BUG_S = 1.0


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached (rather than a bug)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def backoff(failures: int) -> float:
    """Seconds before retry number `failures` (1 = the first failure) of an outage."""
    return BACKOFF_S[min(max(failures, 1), len(BACKOFF_S)) - 1]


def _first_line(exc: BaseException) -> str:
    """The driver's message without its SQL and background lines, for one log line."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


class Outage:
    """A loop's view of the database being away: one warning when it starts, one line when
    it ends, the backoff in between."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures = 0

    def failed(self, exc: BaseException) -> float:
        self.failures += 1
        if self.failures == 1:
            log.warning(
                "database unavailable; retrying until it is back",
                extra={"action": "db_outage", "loop": self.name, "error": _first_line(exc)},
            )
        return backoff(self.failures)

    def succeeded(self) -> None:
        if self.failures:
            log.warning(
                "database back",
                extra={"action": "db_back", "loop": self.name, "retries": self.failures},
            )
        self.failures = 0


class Loop:
    name = "loop"

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.outage = Outage(self.name)

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
            wait = self.run_once()
            self._wake.wait(wait)
            self._wake.clear()

    def run_once(self) -> float:
        """One step, whatever it throws: the seconds to wait before the next."""
        try:
            wait = self.step()
        except Exception as exc:  # a loop must survive anything one round throws at it
            if is_outage(exc):
                return self.outage.failed(exc)
            log.exception("loop step failed", extra={"action": self.name})
            return AFTER_BUG_S
        self.outage.succeeded()
        return wait
