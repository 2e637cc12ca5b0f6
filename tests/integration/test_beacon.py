"""The beacon on a real controller, through both listeners (the server's app and the second
listener the Docker executor's containers use): a run's token is good only while the run is,
and every cap holds on both (issue 10, item 9)."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dockyard.controller import beacon
from dockyard.controller.assembly import Controller
from dockyard.web.asgi import create_asgi, create_beacon_asgi
from tests.integration.deployed import Yard, make_yard

LISTENERS: dict[str, Callable[[Controller], FastAPI]] = {
    "server": lambda ctl: create_asgi(ctl.settings, ctl),
    "containers": create_beacon_asgi,
}


@pytest.fixture
def yard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    yield from make_yard(
        tmp_path / "data",
        db_url=database_url,
        beacon_max_bytes=1024,
        beacon_max_payloads=3,
        beacon_max_run_bytes=2048,
    )


@pytest.fixture(params=sorted(LISTENERS))
def client(request: pytest.FixtureRequest, yard: Yard) -> TestClient:
    return TestClient(LISTENERS[request.param](yard.ctl))


def put(client: TestClient, yard: Yard, run_id: str, kind: str, body: bytes) -> int:
    token = beacon.token_for(yard.ctl.beacon_secret, run_id)
    return client.put(f"/beacon/{token}/{kind}", content=body).status_code


def test_a_run_writes_while_it_runs_and_not_after(client: TestClient, yard: Yard) -> None:
    yard.deploy()
    run_id = yard.trigger()
    assert put(client, yard, run_id, "job_result", b'{"early": 1}') == 409  # pending: no process
    yard.move(run_id, "running")
    assert put(client, yard, run_id, "job_result", b'{"rows": 1}') == 200
    yard.move(run_id, "cancelling")
    assert put(client, yard, run_id, "trace", b"{}") == 200  # dlt's last words while stopping
    yard.move(run_id, "cancelled")

    assert put(client, yard, run_id, "job_result", b'{"rows": 0}') == 409

    assert yard.run(run_id).result == {"rows": 1}


def test_caps_per_payload_per_kind_and_per_run(client: TestClient, yard: Yard) -> None:
    yard.deploy()
    run_id = yard.trigger()
    yard.move(run_id, "running")
    filler = b'{"x": "' + b"y" * 900 + b'"}'  # 909 bytes
    assert put(client, yard, run_id, "state", b'{"x": "' + b"y" * 1100 + b'"}') == 413
    assert [put(client, yard, run_id, "trace", b"{}") for _ in range(4)] == [200, 200, 200, 413]
    assert put(client, yard, run_id, "state", filler) == 200
    assert put(client, yard, run_id, "state", filler) == 200
    assert put(client, yard, run_id, "state", filler) == 413  # 3 x 909 + 6 > 2048 per run
    assert put(client, yard, run_id, "job_result", b'{"ok": true}') == 200  # room for that


def test_refusals_say_what_and_which_setting(client: TestClient, yard: Yard) -> None:
    yard.deploy()
    run_id = yard.trigger()
    yard.move(run_id, "running")
    token = beacon.token_for(yard.ctl.beacon_secret, run_id)
    for _ in range(3):
        client.put(f"/beacon/{token}/trace", content=b"{}")
    count = client.put(f"/beacon/{token}/trace", content=b"{}").json()["error"]
    assert "DOCKYARD_BEACON_MAX_PAYLOADS" in count
    size = client.put(f"/beacon/{token}/state", content=b"x" * 2000).json()["error"]
    assert "DOCKYARD_BEACON_MAX_BYTES" in size
    assert client.put(f"/beacon/{token}/nonsense", content=b"{}").status_code == 404
    assert client.put(f"/beacon/{token}/state", content=b"not json").status_code == 400
