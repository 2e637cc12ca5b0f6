"""A run's container output, streamed into its run log as it arrives.

Two threads per run (stdout, stderr) follow the container's log with timestamps; each
message's time is taken off and kept as the line's, its text goes through the splitter the
local supervisor uses (`dockyard.shim.loglines`: Docker's 16 KiB fragments re-joined, lines
bounded, secrets redacted on the whole line). A stream that breaks (the engine went away) is
resumed after the last line already in the log, so nothing is written twice or lost.
"""

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from dockyard.controller import logs as run_logs
from dockyard.controller.executors.docker.engine import ENGINE_ERRORS, iso
from dockyard.shim import loglines

log = logging.getLogger(__name__)


class LogFollower:
    def __init__(self, container: Callable[[str], Any]) -> None:
        self._container = container  # the run's container, by run id
        self._followers: dict[str, list[threading.Thread]] = {}
        self._broken: set[str] = set()  # runs whose log stream broke (engine away)
        self._redact: dict[str, list[str]] = {}
        self._guard = threading.Lock()

    def follow(self, run_id: str, run_dir: Path) -> None:
        """Stream the container's stdout and stderr into the run log (once per run; after a
        restart it resumes after the last line already in the log)."""
        with self._guard:
            if run_id in self._followers and run_id not in self._broken:
                return
            self._broken.discard(run_id)  # a broken stream resumes after its last line
            threads = [
                threading.Thread(
                    target=self._pump,
                    args=(run_id, run_dir, stream),
                    name=f"logs-{run_id[:8]}-{stream}",
                    daemon=True,
                )
                for stream in ("out", "err")
            ]
            self._followers[run_id] = threads
        for thread in threads:
            thread.start()

    def finish(self, run_id: str, run_dir: Path) -> None:
        """The container ended: read its output to the end, then forget the run."""
        self.follow(run_id, run_dir)
        for thread in self._followers.pop(run_id, []):
            thread.join(timeout=10)
        with self._guard:
            self._redact.pop(run_id, None)

    def _pump(self, run_id: str, run_dir: Path, stream: str) -> None:
        """Copy one stream of the container's output into the run log. With timestamps,
        Docker sends one message per line, or per 16 KiB fragment of a longer one, each
        `<RFC 3339 time> <text>`: the time is taken off every message (a line gets its last
        fragment's), the texts go through the splitter, which joins the fragments."""
        since = run_logs.last_time(run_dir, stream)
        kwargs: dict[str, Any] = {
            "stdout": stream == "out",
            "stderr": stream == "err",
            "stream": True,
            "follow": True,
            "timestamps": True,
        }
        if since is not None:
            kwargs["since"] = datetime.fromisoformat(since)
        stamp: str | None = None

        def write(text: str) -> None:
            if since is not None and stamp is not None and stamp <= since:
                return  # already in the log before the restart
            run_logs.append(run_dir, stream, text, stamp)

        hiding = self.secrets(run_dir)
        lines = loglines.LineSplitter(write, loglines.Redactor(hiding))
        try:
            for message in self._container(run_id).logs(**kwargs):
                stamp, text = message_parts(message, stamp)
                if (latest := self.secrets(run_dir)) is not hiding:  # a held run released
                    lines.redact_with(loglines.Redactor(latest))
                    hiding = latest
                lines.feed(text)
            lines.close()  # a last line without a newline
        except ENGINE_ERRORS as exc:  # an unfinished line is read again on resuming
            with self._guard:
                self._broken.add(run_id)
            log.warning(
                "log stream broke",
                extra={"action": "container_logs", "run_id": run_id, "error": str(exc)},
            )

    def reload_secrets(self, run_dir: Path) -> None:
        """A held run is being released: its secrets were written just now, before the job
        can print anything; from its next message on, the log hides them."""
        found = run_logs.redactions(run_dir)
        with self._guard:
            self._redact[run_dir.name] = found

    def secrets(self, run_dir: Path) -> list[str]:
        """The run's secret values (kept while it runs: its configuration is removed at
        its end, possibly before the last lines are written)."""
        with self._guard:
            if run_dir.name not in self._redact:
                self._redact[run_dir.name] = run_logs.redactions(run_dir)
            return self._redact[run_dir.name]


def message_parts(message: bytes, last: str | None) -> tuple[str | None, bytes]:
    """A Docker log message with timestamps as (its time, ISO; its text)."""
    head, _, text = message.partition(b" ")
    at = iso(head.decode("ascii", "replace")) if len(head) <= 40 else None
    return (at, text) if at is not None else (last, message)
