"""The engine's comings and goings: Docker's event stream (it wakes the runner the moment a
run's container dies), and what is remembered when the engine goes away, so a run's end can
be told apart: the engine stopping (dockerd stops its containers when it shuts down) or
someone's `docker kill`, and how long the runs have waited for an engine that is gone.

The decisions are pure functions of the times involved (`near_outage`, `gave_up`,
`note_outage`); the times come from the executor's clock, never from the wall clock here.
"""

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable

from dockyard.clock import Clock
from dockyard.controller.executors.docker.engine import ENGINE_ERRORS, Engine

log = logging.getLogger(__name__)
# a container that ended by a signal this long before the engine went away ended with it
# (dockerd stops its containers, waiting up to their grace period, before it exits)
OUTAGE_WINDOW_S = 30.0
OUTAGE_EARLY_S = 5.0  # and one that ended this long after the engine was seen going away
# how long a run waits for an engine that went away before it ends without its container
ENGINE_GIVE_UP_S = 120.0
OUTAGES_KEPT = 20
PROBE_PAUSE_S = 0.3  # before asking the engine whether a signal death was its shutdown
DIE_EVENTS = {"type": "container", "event": ["die", "oom"], "label": "dockyard.run_id"}


def near_outage(ended: float, outages: Iterable[float]) -> bool:
    """Whether a container that ended at `ended` (epoch seconds) ended with the engine."""
    return any(ended - OUTAGE_EARLY_S <= t <= ended + OUTAGE_WINDOW_S for t in outages)


def gave_up(away_s: float) -> bool:
    """Whether runs stop waiting for an engine that has been away this long."""
    return away_s >= ENGINE_GIVE_UP_S


def note_outage(outages: list[float], now: float) -> list[float]:
    """The outages with one seen at `now` (sightings within a second are one outage)."""
    if outages and now - outages[-1] <= 1.0:
        return outages
    return [*outages, now][-OUTAGES_KEPT:]


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Outages:
    """When the engine was seen going away, and since when it is unreachable."""

    def __init__(
        self, engine: Engine, clock: Clock, pause: Callable[[float], None] = time.sleep
    ) -> None:
        self.engine = engine
        self.clock = clock
        self._pause = pause  # a wait, not a decision: tests need not spend it
        self._seen: list[float] = []
        self._away_since: float | None = None
        self._guard = threading.Lock()

    def now(self) -> float:
        return self.clock.now().timestamp()

    @property
    def away(self) -> bool:
        return self._away_since is not None

    def lost(self) -> None:
        """The engine did not answer: remember when, and connect again next time."""
        now = self.now()
        with self._guard:
            if self._away_since is None:
                self._away_since = now
            self._seen = note_outage(self._seen, now)
        self.engine.forget()

    def back(self) -> None:
        self._away_since = None

    def away_for(self) -> float:
        """Seconds since the engine went away (0 while it answers)."""
        now = self.now()
        return now - (self._away_since or now)

    def stop_reason(self, signum: int, ended: float | None) -> str | None:
        """Why a container ended by a signal dockyard did not send: the engine stopping
        or restarting, else None (`docker kill` or `docker stop` by someone: the signal is
        the reason). `ended`: when it ended (epoch seconds), None if unknown."""
        ended = self.now() if ended is None else ended
        near = near_outage(ended, self._seen)
        if not near:
            # the container's death may be the first sign of the engine shutting down:
            # its socket closes right away, its event stream only after the containers
            self._pause(PROBE_PAUSE_S)
            if not self.engine.answers():
                self.lost()
                near = True
        if not near:
            return None
        return (
            "the docker engine stopped or restarted during the run"
            f" (the container got {signal_name(signum)})"
        )


def watch(outages: Outages, wake: Callable[[], None], on_back: Callable[[], object]) -> None:
    """Docker's event stream: wake the runner the moment a run's container dies. When the
    engine goes away the stream is re-opened with a growing pause (up to 5 s); once it is
    back, `on_back` runs and the runner is woken (anything may have ended meanwhile)."""
    pause, lost = 1.0, False
    while True:
        try:
            stream = outages.engine.client.events(decode=True, filters=DIE_EVENTS)
            if lost:
                log.info("docker engine is back", extra={"action": "docker_events"})
                outages.back()
                on_back()
                wake()
            pause, lost = 1.0, False
            for _event in stream:
                wake()
            error = "the event stream ended"
        except ENGINE_ERRORS as exc:
            error = str(exc)
        if not lost:
            log.warning(
                "docker event stream lost; reconnecting",
                extra={"action": "docker_events", "error": error},
            )
            outages.lost()
            wake()
        lost = True
        time.sleep(pause)
        pause = min(5.0, pause * 2)


def start_watching(
    outages: Outages, wake: Callable[[], None], on_back: Callable[[], object]
) -> None:
    threading.Thread(
        target=watch, args=(outages, wake, on_back), name="docker-events", daemon=True
    ).start()
