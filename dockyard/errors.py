"""One root error, with subclasses that say what kind of failure it is.

Messages are written for the person at the terminal: they name the problem and, where there is
one, the fix. HTTP status codes are chosen in `web/` only, from the class.
"""


class DockyardError(Exception):
    """Base of every error dockyard raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DockyardError):
    """The request or the workspace is malformed; retrying unchanged will not help."""


class TooLarge(InvalidInput):
    """A request body, a payload or a count is over its limit (the message names the setting)."""


class NotFound(DockyardError):
    """The named workspace, job, run or version does not exist."""


class Conflict(DockyardError):
    """The request clashes with the current state (e.g. the workspace moved on meanwhile)."""


class Unauthorized(DockyardError):
    """Missing, wrong or revoked token."""


class Forbidden(DockyardError):
    """The token is valid but does not allow this action."""


class Unavailable(DockyardError):
    """A dependency (server, executor, package index) cannot be reached."""


def one_line(text: str) -> str:
    """Fold a multi-line message (dlt's validation lists) into one line."""
    parts = [line.strip().lstrip("-* ").strip() for line in text.splitlines()]
    out = ""
    for part in filter(None, parts):
        out += part if not out else (" " if out.endswith(":") else "; ") + part
    return out
