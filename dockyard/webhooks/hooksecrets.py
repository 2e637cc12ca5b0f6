"""The webhook secrets of links, opened once and kept in memory by hook id.

Every delivery needs its link's secret before its body is read. Reading the link and opening
its sealed secret (an age decryption with the master key) on every delivery cost a database
session, a hop to a worker thread and the decryption: about a third of a delivery's server
time (bench/github_webhooks.py, docs/benchmarks.md section 16).

The memory is never the authority. Only links found in the database are kept (an unknown
hook id is looked up every time and never remembered, so strangers cannot fill it), and a
delivery is stored only if the link is still there with the same sealed secret
(`receiver._store`); a signature that fails against a remembered secret is checked again
against the database's before the 401. So an unlink, or a link's new secret, holds from the
next delivery on.
"""

import threading
from dataclasses import dataclass, field

LIMIT = 4096  # links (one per workspace): far more than a server holds


@dataclass(frozen=True, slots=True)
class Known:
    sealed: str  # the link's `sealed_secret` as stored
    secret: bytes = field(repr=False)  # opened
    remembered: bool = False  # True when it came from memory rather than the database


class HookSecrets:
    def __init__(self, limit: int = LIMIT) -> None:
        self._known: dict[str, Known] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def get(self, hook_id: str) -> Known | None:
        with self._lock:
            return self._known.get(hook_id)

    def put(self, hook_id: str, known: Known) -> None:
        with self._lock:
            if len(self._known) >= self._limit:
                self._known.clear()
            self._known[hook_id] = Known(known.sealed, known.secret, remembered=True)

    def forget(self, hook_id: str) -> None:
        with self._lock:
            self._known.pop(hook_id, None)
