"""The Settings page's alert section (docs/alerts.md): add a channel, remove one, send a
test. Forms carry the session's CSRF token like the page's other forms; the answer is the
settings page with the outcome (a test's result, a generated webhook secret shown once)."""

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from dockyard.controller import usecases
from dockyard.controller.alerts import kinds
from dockyard.errors import Conflict, InvalidInput
from dockyard.web.pages import render, workspace
from dockyard.web.pages.render import CheckedForm, Who

router = APIRouter(prefix="/ui/w/{ws}/alerts", include_in_schema=False)
FIELDS = ("url", "secret", "host", "port", "security", "username", "password", "sender", "to")


@router.post("")
def add(ws: str, request: Request, who: Who, form: CheckedForm) -> HTMLResponse:
    kind = form.get("kind", "")
    fields = {f: form[f].strip() for f in FIELDS if form.get(f, "").strip()}
    events = [e for e in kinds.EVENTS if form.get(f"event_{e}")]
    try:
        created = usecases.alerts.add_channel(
            render.controller(request), who, ws, form.get("name", "").strip(), kind, fields,
            events or None,
        )  # fmt: skip
    except (InvalidInput, Conflict) as exc:  # said above the form, which stays
        return workspace.settings_page(request, who, ws, alert_error=exc.message)
    return workspace.settings_page(request, who, ws, alert_created=created)


@router.post("/{name}/remove")
def remove(ws: str, name: str, request: Request, who: Who, form: CheckedForm) -> Response:
    usecases.alerts.remove_channel(render.controller(request), who, ws, name)
    return render.see_other(f"/ui/w/{quote(ws, safe='')}/settings#alerts")


@router.post("/{name}/test")
def test(ws: str, name: str, request: Request, who: Who, form: CheckedForm) -> HTMLResponse:
    result = usecases.alerts.test_channel(render.controller(request), who, ws, name)
    return workspace.settings_page(request, who, ws, alert_test=result)
