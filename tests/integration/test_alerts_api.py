"""The alert routes in-process on a real controller: every answer declared and equal to its
use case, the admin role required, bad input refused in one line, the channel limit, and the
dashboard's Settings forms (CSRF-checked) adding, testing and removing a channel."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dockyard.controller import auth, usecases, workspaces
from dockyard.web import api_models as M
from dockyard.web.asgi import create_asgi
from tests.alerting import Receiver, http_receiver
from tests.integration.deployed import ADMIN, TOKEN, WS, Yard, make_yard
from tests.integration.test_api_shapes import answer, error, same

API = f"/api/v1/workspaces/{WS}"


@pytest.fixture
def yard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    yield from make_yard(tmp_path / "data", db_url=database_url, alert_max_channels=3)


@pytest.fixture
def client(yard: Yard) -> TestClient:
    return TestClient(create_asgi(yard.ctl.settings, yard.ctl), headers=bearer(TOKEN))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as found:
        yield found


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_alert_answers_are_declared_and_hold_no_secret(
    yard: Yard, client: TestClient, receiver: Receiver
) -> None:
    hook = {"name": "hook", "kind": "webhook", "url": f"{receiver.url}/hook"}
    made = answer(client, "POST", f"{API}/alerts", M.AlertChannelCreated, json=hook)
    assert made["webhook_secret"] and made["secret"] == made["webhook_secret"][:6] + "…"
    slack = {"name": "team", "kind": "slack", "url": f"{receiver.url}/services/T/B/credential"}
    added = answer(client, "POST", f"{API}/alerts", M.AlertChannelCreated, json=slack)
    assert "credential" not in str(added) and added["secret"] == "set"

    listed = answer(client, "GET", f"{API}/alerts", list[M.AlertChannel])
    assert listed == same(usecases.alerts.list_channels(yard.ctl, ADMIN, WS))
    assert made["webhook_secret"] not in str(listed) and "credential" not in str(listed)
    tested = answer(client, "POST", f"{API}/alerts/hook/test", M.AlertDelivery)
    assert (tested["status"], tested["attempts"], tested["event"]) == ("sent", 1, "test")
    assert receiver.at("/hook")[0].json()["delivery_id"] == tested["id"]
    records = answer(client, "GET", f"{API}/alert-deliveries?limit=5", list[M.AlertDelivery])
    assert records == same(usecases.alerts.deliveries(yard.ctl, ADMIN, WS, 5))
    removed = answer(client, "DELETE", f"{API}/alerts/team", M.AlertChannelRemoved)
    assert removed["removed"] is True


def test_only_an_admin_of_the_workspace_manages_alerts(yard: Yard, client: TestClient) -> None:
    with yard.ctl.db.session() as session:
        deploy, _ = auth.create(session, "ci", "deploy", None)
        other, _ = auth.create(session, "other-admin", "admin", None)
    usecases.workspaces.create_workspace(yard.ctl, ADMIN, "elsewhere")
    with yard.ctl.db.session() as session:
        limited, _ = auth.create(session, "ew", "admin", workspaces.get(session, "elsewhere"))
    error(client.get(f"{API}/alerts", headers=bearer(deploy)), 403, "forbidden")
    refused = client.get(f"{API}/alerts", headers=bearer(limited))
    assert "limited to another workspace" in error(refused, 403, "forbidden")
    assert client.get(f"{API}/alerts", headers=bearer(other)).status_code == 200


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"kind": "pager"}, "unknown channel kind 'pager'"),
        ({"kind": "webhook", "url": "ftp://x.example/h"}, "is not an http or https URL"),
        ({"kind": "webhook", "url": "https://x.example/h", "secret": "short"}, "16-256"),
        ({"kind": "webhook", "url": "https://x.example", "events": ["crash"]}, "unknown alert"),
        ({"kind": "slack", "url": "http://hooks.slack.com/x"}, "is not an https URL"),
        ({"kind": "email", "host": "h", "sender": "a@b.c", "to": []}, "give 1 to 20 --to"),
    ],
)
def test_bad_channels_are_refused_in_one_line(
    client: TestClient, body: dict[str, Any], says: str
) -> None:
    response = client.post(f"{API}/alerts", json={"name": "bad", **body})
    assert says in error(response, 400, "invalid_input")


def test_a_workspace_has_at_most_its_limit_of_channels(client: TestClient) -> None:
    for n in range(3):
        body = {"name": f"h{n}", "kind": "webhook", "url": "https://x.example/h"}
        assert client.post(f"{API}/alerts", json=body).status_code == 201
    again = client.post(f"{API}/alerts", json={**body, "name": "h3"})
    assert "DOCKYARD_ALERT_MAX_CHANNELS" in error(again, 409, "conflict")
    taken = client.post(f"{API}/alerts", json=body)
    assert "already has an alert channel 'h2'" in error(taken, 409, "conflict")
    assert "no alert channel 'nope'" in error(client.delete(f"{API}/alerts/nope"), 404, "not_found")


def test_the_settings_page_adds_tests_and_removes_a_channel(
    yard: Yard, client: TestClient, receiver: Receiver
) -> None:
    pages = TestClient(client.app, follow_redirects=False)  # a browser: a session, no bearer
    own = {"Origin": "http://testserver"}
    assert pages.post("/ui/login", data={"token": TOKEN}, headers=own).status_code == 303
    page = pages.get(f"/ui/w/{WS}/settings")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf and 'id="alerts"' in page.text
    form = {"kind": "webhook", "name": "ui-hook", "url": f"{receiver.url}/ui", "event_failed": "1"}

    refused = pages.post(f"/ui/w/{WS}/alerts", data=form)  # no CSRF token
    assert refused.status_code == 403
    added = pages.post(f"/ui/w/{WS}/alerts", data={**form, "csrf_token": csrf[1]})
    secret = re.search(r'id="alert-secret">([0-9a-f]{64})<', added.text)
    assert secret, added.text
    channel = usecases.alerts.list_channels(yard.ctl, ADMIN, WS)[0]
    assert channel["events"] == ["failed"]
    assert secret[1] not in pages.get(f"/ui/w/{WS}/settings").text  # shown that once

    tested = pages.post(f"/ui/w/{WS}/alerts/ui-hook/test", data={"csrf_token": csrf[1]})
    assert "Test alert sent through" in tested.text and len(receiver.at("/ui")) == 1
    gone = pages.post(f"/ui/w/{WS}/alerts/ui-hook/remove", data={"csrf_token": csrf[1]})
    assert gone.status_code == 303
    assert usecases.alerts.list_channels(yard.ctl, ADMIN, WS) == []
