"""The one table from a dockyard error to its HTTP status, for every answer the web layer
gives: the API's and the dashboard's error handlers (`web/asgi.py`) and the app proxy's own
refusals (`web/app_answers.py`).

It lives apart from `web/asgi.py` so that the proxy's modules, which `app.py` imports, can
use it without importing `app.py` back (the import-linter contract `acyclic`).
"""

from dockyard import errors

STATUS = {
    errors.InvalidInput: 400,
    errors.TooLarge: 413,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Unavailable: 503,
}


def status_of(exc: errors.DockyardError) -> int:
    """The status of the nearest class in `exc`'s ancestry that has one; 500 (a bug) else."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500
