"""One root error, with subclasses that say what kind of failure it is.

Messages are written for the person at the terminal: they name the problem and, where there is
one, the fix. HTTP status codes are chosen in `web/` only, from the class.

Each error also has a `code`, a stable snake_case word a program branches on (the API answers
`{"error": message, "code": code}`; the CLI reads the code back): the class's own code, or a
more specific one where a caller acts on the meaning (`NotFound(..., code="not_reconciled")`).
Messages may be reworded at any time; codes are kept.
"""

NOT_RECONCILED = "not_reconciled"
"""A `NotFound`: the server has not applied this version yet (`dockyard deploy` waits)."""
RECONCILE_FAILED = "reconcile_failed"
"""A `NotFound`: the server tried to apply this version and failed (the message says why)."""
UNISOLATED_DEPLOY = "unisolated_deploy"
"""A `Forbidden`: a workspace-limited token may not deploy to an unsandboxed local executor."""


class DockyardError(Exception):
    """Base of every error dockyard raises on purpose."""

    code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(DockyardError):
    """The request or the workspace is malformed; retrying unchanged will not help."""

    code = "invalid_input"


class TooLarge(InvalidInput):
    """A request body, a payload or a count is over its limit (the message names the setting)."""

    code = "too_large"


class NotFound(DockyardError):
    """The named workspace, job, run or version does not exist."""

    code = "not_found"


class Conflict(DockyardError):
    """The request clashes with the current state (e.g. the workspace moved on meanwhile)."""

    code = "conflict"


class Unauthorized(DockyardError):
    """Missing, wrong or revoked token."""

    code = "unauthorized"


class Forbidden(DockyardError):
    """The token is valid but does not allow this action."""

    code = "forbidden"


class Unavailable(DockyardError):
    """A dependency (server, executor, package index) cannot be reached."""

    code = "unavailable"


def one_line(text: str) -> str:
    """Fold a multi-line message (dlt's validation lists) into one line."""
    parts = [line.strip().lstrip("-* ").strip() for line in text.splitlines()]
    out = ""
    for part in filter(None, parts):
        out += part if not out else (" " if out.endswith(":") else "; ") + part
    return out
