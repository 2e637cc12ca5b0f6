"""The app proxy over real sockets: dockyard's ASGI app and a small upstream app, each served
by uvicorn in a thread, with real SQLite and real tokens. The runner is not started: app runs
are rows whose entry point names the upstream's port (the e2e tests start real apps)."""

import asyncio
import hashlib
import http.client
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from dockyard.clock import utcnow
from dockyard.controller import app_service, auth
from dockyard.controller.core import Controller
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.settings import Settings
from dockyard.web import sessions
from dockyard.web.app import create_app
from tests.conftest import free_port
from tests.unit import samples

MARIMO = "dlt._workspace.deployment.launchers.marimo"


# the upstream app -------------------------------------------------------------------------
async def echo(request: Request) -> Response:
    body = await request.body()
    path = request.url.path
    if path.endswith("/events"):
        return await events(request)
    if path.endswith("/big"):
        return Response(b"x" * (4 << 20), media_type="application/octet-stream")
    if path.endswith("/redirect"):
        port = request.url.port
        return Response(status_code=302, headers={"Location": f"http://127.0.0.1:{port}/t?x=1"})
    if path.endswith("/cookies"):
        response = Response("ok")
        response.set_cookie("app_cookie", "1", path="/")
        response.set_cookie("dockyard_session", "forged", path="/")
        return response
    return JSONResponse(
        {
            "method": request.method,
            "path": path,
            "query": request.url.query,
            "headers": dict(request.headers),
            "body_len": len(body),
            "body_sha": hashlib.sha256(body).hexdigest(),
        }
    )


async def events(request: Request) -> StreamingResponse:
    async def stream() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"data: {i}\n\n".encode()
            await asyncio.sleep(0.4)

    return StreamingResponse(stream(), media_type="text/event-stream")


async def ws_echo(websocket: WebSocket) -> None:
    offered = websocket.headers.get("sec-websocket-protocol", "")
    await websocket.accept(subprotocol=offered.split(",")[0].strip() or None)
    await websocket.send_text(f"cookie={websocket.headers.get('cookie', '')}")
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        await websocket.send_text(f"echo:{message.get('text')}")


UPSTREAM = Starlette(
    routes=[
        WebSocketRoute("/{p:path}", ws_echo),
        Route("/{p:path}", echo, methods=["GET", "POST", "PUT", "DELETE"]),
    ]
)


class Served:
    """An ASGI app served by uvicorn on a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", ws="websockets-sansio"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "Served":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# dockyard with apps as rows -----------------------------------------------------------------
@dataclass
class World:
    ctl: Controller
    url: str
    upstream_port: int
    read_token: str
    other_token: str  # read, limited to another workspace
    deploy_token: str

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.get(self.url + path, headers=headers, timeout=10, **kwargs)

    def add_app(self, ref: str, launcher: str, port: int | None, base_path: str | None) -> str:
        definition = samples.job(samples.TINY_API)
        definition["job_ref"] = ref
        definition["entry_point"]["launcher"] = launcher
        with self.ctl.db.session() as session:
            ws = session.query(Workspace).filter_by(name="ws").one()
            now = utcnow()
            job = Job(
                workspace_id=ws.id,
                job_ref=ref,
                job_type="interactive",
                status="active",
                definition=definition,
                fingerprint="0" * 64,
                created_sha="a" * 40,
                updated_sha="a" * 40,
                created_at=now,
                updated_at=now,
                runs_created=1,
            )
            session.add(job)
            session.flush()
            if port is None:
                return ""
            run_args: dict[str, Any] = {"port": port}
            if base_path:
                run_args["base_path"] = base_path
            run = Run(
                id=str(uuid.uuid4()),
                workspace_id=ws.id,
                job_id=job.id,
                number=1,
                trigger="http:",
                status="running",
                created_at=now,
                started_at=now,
                timeout_s=300.0,
                grace_s=5.0,
                entry_point={"run_args": run_args},
            )
            session.add(run)
            return run.id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("proxy")
    ctl = Controller(Settings(data_dir=tmp, start_loops=False))
    with ctl.db.session() as session:
        ws = Workspace(name="ws", created_at=utcnow(), deployment_version="a" * 40)
        other = Workspace(name="other", created_at=utcnow())
        session.add_all([ws, other])
        session.flush()
        read, _ = auth.create(session, "reader", "read", ws)
        limited, _ = auth.create(session, "elsewhere", "read", other)
        deploy, _ = auth.create(session, "deployer", "deploy", ws)
    with Served(UPSTREAM) as upstream, Served(create_app(ctl.settings, ctl)) as dockyard:
        w = World(ctl, dockyard.url, upstream.port, read, limited, deploy)
        w.add_app("jobs.api.tiny", samples.JOB_LAUNCHER, upstream.port, None)
        w.add_app("jobs.nb", MARIMO, upstream.port, "/apps/ws/nb")
        w.add_app("jobs.api.sleepy", samples.JOB_LAUNCHER, None, None)
        yield w
    ctl.db.dispose()


# HTTP ---------------------------------------------------------------------------------------
def test_requests_reach_the_app_without_dockyards_credentials(world: World) -> None:
    response = world.get(
        "/apps/ws/tiny/echo/x?a=1&b=%2F",
        world.read_token,
        headers={"Cookie": "theme=dark; dockyard_session=1.2.3; other=x"},
    )

    assert response.status_code == 200
    seen = response.json()
    assert seen["path"] == "/echo/x" and seen["query"] == "a=1&b=%2F"
    assert "authorization" not in seen["headers"]
    assert seen["headers"]["cookie"] == "theme=dark; other=x"
    assert seen["headers"]["x-forwarded-prefix"] == "/apps/ws/tiny"
    assert seen["headers"]["x-forwarded-host"] == world.url.removeprefix("http://")


def test_an_app_that_honours_a_base_path_gets_the_full_path(world: World) -> None:
    seen = world.get("/apps/ws/nb/echo", world.read_token).json()

    assert seen["path"] == "/apps/ws/nb/echo"


def test_a_job_may_be_named_by_its_full_ref_and_methods_and_bodies_pass(world: World) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    response = httpx.post(
        world.url + "/apps/ws/api.tiny/upload",
        content=body,
        headers={"Authorization": f"Bearer {world.read_token}"},
    )

    seen = response.json()
    assert seen["method"] == "POST" and seen["path"] == "/upload"
    assert seen["body_len"] == len(body)
    assert seen["body_sha"] == hashlib.sha256(body).hexdigest()


def test_the_app_root_without_a_slash_redirects(world: World) -> None:
    response = world.get("/apps/ws/tiny?x=1", world.read_token)

    assert response.status_code == 307
    assert response.headers["location"] == "/apps/ws/tiny/?x=1"


def test_redirects_to_the_apps_origin_and_cookie_paths_stay_under_the_mount(world: World) -> None:
    redirect = world.get("/apps/ws/tiny/redirect", world.read_token)
    cookies = world.get("/apps/ws/tiny/cookies", world.read_token)

    assert redirect.headers["location"] == "/apps/ws/tiny/t?x=1"
    set_cookies = cookies.headers.get_list("set-cookie")
    assert len(set_cookies) == 1  # the forged session cookie is dropped
    assert set_cookies[0].startswith("app_cookie=1") and "Path=/apps/ws/tiny/" in set_cookies[0]
    # the proxy keeps no cookie jar: what the app set for one client never reaches another
    assert "cookie" not in world.get("/apps/ws/tiny/echo", world.read_token).json()["headers"]


def test_event_streams_arrive_as_they_are_sent(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.read_token}"}
    arrivals = []
    start = time.monotonic()
    with httpx.stream("GET", world.url + "/apps/ws/tiny/events", headers=headers) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic() - start)

    assert len(arrivals) == 3
    assert arrivals[0] < arrivals[2] - 0.5  # the first event was not held back until the end


def test_a_large_response_is_passed_whole(world: World) -> None:
    response = world.get("/apps/ws/tiny/big", world.read_token)

    assert len(response.content) == 4 << 20


def test_a_dot_dot_path_is_refused(world: World) -> None:
    # sent as is (httpx would resolve the dots before sending)
    connection = http.client.HTTPConnection("127.0.0.1", int(world.url.rsplit(":", 1)[1]))
    headers = {"Authorization": f"Bearer {world.read_token}"}
    for path in ("/apps/ws/tiny/x/../../nb/echo", "/apps/ws/tiny/%2e%2e/echo"):
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 400, path
    connection.close()


# who may pass -------------------------------------------------------------------------------
def test_without_credentials_a_browser_goes_to_the_login_page(world: World) -> None:
    response = world.get("/apps/ws/tiny/a?b=1", headers={"Accept": "text/html,*/*"})

    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fapps%2Fws%2Ftiny%2Fa%3Fb%3D1"


def test_without_credentials_an_api_client_gets_401(world: World) -> None:
    response = world.get("/apps/ws/tiny/")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "log in first" in response.json()["error"]


def test_a_wrong_or_foreign_token_is_refused(world: World) -> None:
    assert world.get("/apps/ws/tiny/", "dy_not_a_token").status_code == 401
    assert world.get("/apps/ws/tiny/", world.other_token).status_code == 403
    assert world.get("/apps/other/tiny/", world.read_token).status_code == 403
    assert world.get("/apps/ws/nope/", world.read_token).status_code == 404


def test_the_dashboards_session_cookie_lets_a_browser_in(world: World) -> None:
    cookie = sessions.login(world.ctl, world.read_token)

    response = world.get("/apps/ws/tiny/echo", headers={"Cookie": f"dockyard_session={cookie}"})

    assert response.status_code == 200
    assert "cookie" not in response.json()["headers"]  # and the app does not see it
    forged = cookie.rsplit(".", 1)[0] + ".0000"
    assert (
        world.get("/apps/ws/tiny/", headers={"Cookie": f"dockyard_session={forged}"}).status_code
        == 401
    )


def test_the_apps_api_needs_read_to_serve_and_deploy_to_share(world: World) -> None:
    def call(method: str, path: str, token: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.request(
            method, f"{world.url}/api/v1/workspaces/ws/apps{path}", headers=headers
        )

    listed = call("GET", "", world.read_token).json()
    assert {a["name"]: a["status"] for a in listed}["tiny"] == "running"
    served = call("POST", "/tiny", world.read_token).json()
    assert served["url"] == f"{world.url}/apps/ws/tiny/" and served["run"]["status"] == "running"
    assert call("POST", "/tiny/links", world.read_token).status_code == 403
    made = call("POST", "/tiny/links", world.deploy_token)
    assert made.status_code == 201 and made.json()["token"].startswith("dyp_")
    assert "token" not in call("GET", "/tiny/links", world.deploy_token).json()[0]
    assert call("DELETE", "/tiny/links", world.deploy_token).json()["revoked"][0]["active"] is False
    assert call("POST", "/tiny/links", world.other_token).status_code == 403


# start on demand ----------------------------------------------------------------------------
def test_an_app_without_a_run_is_started_once_and_answers_starting(world: World) -> None:
    api = world.get("/apps/ws/sleepy/", world.read_token)
    again = world.get("/apps/ws/sleepy/x", world.read_token)
    page = world.get("/apps/ws/sleepy/", world.read_token, headers={"Accept": "text/html"})

    assert api.status_code == 503 and api.headers["retry-after"] == "2"
    assert api.headers["x-dockyard-app"] == "starting"
    assert api.json()["status"] == "starting" and api.json()["number"] == 2
    assert again.json()["run_id"] == api.json()["run_id"]  # reused, not started twice
    assert page.status_code == 503 and '<meta http-equiv="refresh" content="2">' in page.text
    with world.ctl.db.session() as session:
        run = session.get(Run, api.json()["run_id"])
        assert run is not None and run.status == "pending" and run.trigger == "http:"


def test_a_running_app_that_does_not_answer_yet_is_starting(world: World) -> None:
    world.add_app("jobs.api.silent", samples.JOB_LAUNCHER, free_port(), None)

    response = world.get("/apps/ws/silent/", world.read_token)

    assert response.status_code == 503
    assert response.json()["status"] == "starting"


# WebSockets ---------------------------------------------------------------------------------
def test_websockets_pass_both_ways_with_the_subprotocol(world: World) -> None:
    url = world.url.replace("http", "ws") + "/apps/ws/nb/ws"
    headers = {
        "Authorization": f"Bearer {world.read_token}",
        "Cookie": "dockyard_session=1.2.3; app=1",
    }
    with ws_connect(url, additional_headers=headers, subprotocols=["marimo"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "marimo"
        assert ws.recv(timeout=5) == "cookie=app=1"
        ws.send("hello")
        assert ws.recv(timeout=5) == "echo:hello"


def test_a_websocket_without_credentials_is_refused(world: World) -> None:
    url = world.url.replace("http", "ws") + "/apps/ws/nb/ws"
    with pytest.raises(InvalidStatus, match="403"):
        ws_connect(url)


# public links -------------------------------------------------------------------------------
def deployer(world: World) -> auth.Principal:
    with world.ctl.db.session() as session:
        return auth.authenticate(session, world.deploy_token)


def test_a_public_link_serves_its_app_without_login_until_revoked(world: World) -> None:
    link = app_service.create_link(world.ctl, deployer(world), "ws", "tiny", "demo", world.url)
    assert link["url"].startswith(world.url + "/p/dyp_")

    served = httpx.get(link["url"] + "echo?z=1")
    assert served.status_code == 200
    assert served.json()["path"] == "/echo"
    assert served.json()["headers"]["x-forwarded-prefix"] == link["path"].rstrip("/")
    assert httpx.get(link["url"] + "redirect").headers["location"] == link["path"] + "t?x=1"

    app_service.revoke_links(world.ctl, deployer(world), "ws", "tiny", link["id"])

    assert httpx.get(link["url"] + "echo").status_code == 404


def test_a_public_link_reaches_nothing_but_its_app(world: World) -> None:
    link = app_service.create_link(world.ctl, deployer(world), "ws", "nb", None, world.url)
    token = link["token"]

    assert httpx.get(f"{world.url}/p/{token}/echo").json()["path"] == "/apps/ws/nb/echo"
    assert httpx.get(f"{world.url}/p/{token}x/echo").status_code == 404
    assert httpx.get(f"{world.url}/p/dyp_guess/echo").status_code == 404
    # the link is no credential anywhere else
    cookie = {"Cookie": f"dockyard_session={token}"}
    assert httpx.get(f"{world.url}/apps/ws/nb/", headers=cookie).status_code == 401
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{world.url}/api/v1/workspaces", headers=bearer).status_code == 401


def test_revoking_a_link_closes_its_open_websockets(world: World) -> None:
    link = app_service.create_link(world.ctl, deployer(world), "ws", "nb", None, world.url)
    url = link["url"].replace("http", "ws") + "ws"
    with ws_connect(url) as ws:
        ws.recv(timeout=5)
        ws.send("before")
        assert ws.recv(timeout=5) == "echo:before"

        result = app_service.revoke_links(world.ctl, deployer(world), "ws", "nb", None)

        assert result["closed_connections"] == 1
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_revoking_a_link_ends_its_open_event_streams(world: World) -> None:
    link = app_service.create_link(world.ctl, deployer(world), "ws", "tiny", None, world.url)
    received = []
    with httpx.stream("GET", link["url"] + "events") as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                received.append(line)
                app_service.revoke_links(world.ctl, deployer(world), "ws", "tiny", link["id"])

    assert received == ["data: 0"]


# idle -----------------------------------------------------------------------------------------
def test_an_app_nobody_uses_is_stopped_after_its_idle_window(world: World) -> None:
    run_id = world.add_app("jobs.api.idle", samples.JOB_LAUNCHER, world.upstream_port, None)
    apps = world.ctl.apps
    world.get("/apps/ws/idle/echo", world.read_token)
    now = utcnow()

    assert run_id not in apps.monitor.sweep(now + timedelta(seconds=200))  # window: 300 s
    assert run_id in apps.monitor.sweep(now + timedelta(seconds=301))
    with world.ctl.db.session() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.status == "cancelling" and run.stop_reason == "idle"


def test_an_open_websocket_keeps_an_app_from_idling(world: World) -> None:
    run_id = world.add_app("jobs.busy", MARIMO, world.upstream_port, "/apps/ws/busy")
    url = world.url.replace("http", "ws") + "/apps/ws/busy/ws"
    headers = {"Authorization": f"Bearer {world.read_token}"}
    with ws_connect(url, additional_headers=headers) as ws:
        ws.recv(timeout=5)
        assert run_id not in world.ctl.apps.monitor.sweep(utcnow() + timedelta(hours=3))
    deadline = time.monotonic() + 5
    while world.ctl.apps.activity.state(run_id)[1] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_id in world.ctl.apps.monitor.sweep(utcnow() + timedelta(seconds=301))
