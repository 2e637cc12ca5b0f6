"""The beacon: a run's credentials die with the run, and what a run may store is capped
(issue 10, item 9; docs/security.md "Bounded inputs and reads").

One server for the module, with small caps so that a job reaches them quickly: 5 payloads of
a kind per run, 1 MiB per payload.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dockyard.controller import beacon
from tests.conftest import WORKSPACES, Cli, Server, copy_workspace, make_server, wait_run
from tests.security.conftest import probes

CAPS = {"DOCKYARD_BEACON_MAX_PAYLOADS": "5", "DOCKYARD_BEACON_MAX_BYTES": str(1 << 20)}


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("beacon-server"), **CAPS).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def deployed(capped: Server, cache_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """The hostile workspace, deployed once to the capped server."""
    tmp = tmp_path_factory.mktemp("beacon-cli")
    cli = Cli(capped, cache_home, tmp / "config", "hostile-beacon")
    cli.run("workspace", "create", cli.workspace)
    cli.run("deploy", cwd=copy_workspace(WORKSPACES / "hostile", tmp / "hostile"))
    return cli


def test_a_finished_runs_beacon_cannot_overwrite_its_result(deployed: Cli) -> None:
    cli = deployed
    cli.run("launch", "bounds_result")
    run = wait_run(cli, "bounds_result")
    assert run["status"] == "completed", run
    assert run["result"]["result"] == {"rows": 42}  # ordinary use: dlt's result arrived
    dsn = probes(cli, run["run_id"])["bounds_dsn"]

    forged = httpx.put(f"{dsn}/job_result", content=json.dumps({"rows": 0, "forged": True}))

    assert forged.status_code == 409, forged.text
    assert "its beacon takes payloads only while it runs" in forged.json()["error"]
    after = cli.json("job-run", "bounds_result", "info")
    assert after["result"]["result"] == {"rows": 42}
    # the same credential with a trace or state: refused too
    assert httpx.put(f"{dsn}/trace", content=b"{}").status_code == 409


def test_a_run_cannot_store_more_than_its_caps(deployed: Cli) -> None:
    cli = deployed
    cli.run("launch", "bounds_beacon_flood")
    run = wait_run(cli, "bounds_beacon_flood")
    assert run["status"] == "completed", run

    found = probes(cli, run["run_id"])

    assert found["bounds_result_ok"] == "200"  # ordinary use: a small payload is stored
    assert run["result"] == {"ok": 1}
    assert found["bounds_beacon_count"] == "accepted=5 refused=[413]"
    assert found["bounds_beacon_size"] == "413"  # 64 MiB declared: refused before reading
    assert found["bounds_beacon_stream"] == "413"  # 64 MiB streamed: cut off at 1 MiB


def test_a_beacon_token_signed_with_another_key_is_refused(capped: Server) -> None:
    token = beacon.token_for(b"not the server's key", "0b7e5c1e-3f7a-4c55-9d1f-2f8f7d0f4a11")
    answer = httpx.put(f"{capped.url}/beacon/{token}/job_result", content=b"{}")
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid beacon token"
