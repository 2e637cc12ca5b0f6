"""The app proxy over real sockets: dockyard's ASGI app and a small upstream app, each served
by uvicorn in a thread, with real SQLite and real tokens. The runner is not started: app runs
are rows whose entry point names the upstream's port (the e2e tests start real apps).

Apps answer on their own origins, `http://<app>--ws.apps.localhost:<port>/` (the tests'
resolver maps `*.localhost` to loopback, as browsers do); the dashboard on 127.0.0.1."""

import asyncio
import hashlib
import html
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
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.settings import Settings
from dockyard.web import sessions
from dockyard.web.asgi import create_asgi
from tests.conftest import free_port, new_database_url
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
    if path.endswith("/go"):
        return Response(status_code=302, headers={"Location": request.query_params["to"]})
    if path.endswith("/cookies"):
        response = Response("ok")
        response.set_cookie("app_cookie", "1", path="/", domain="apps.localhost")
        response.set_cookie("dockyard_session", "forged", path="/")
        response.set_cookie("dockyard_app", "forged", path="/")
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
    """An ASGI app served by uvicorn on a free port, in a thread (as `dockyard server` serves
    it: uvicorn believes no X-Forwarded-* header itself)."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            ws="websockets-sansio",
            proxy_headers=False,
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
    url: str  # the dashboard's origin
    port: int
    upstream_port: int
    read_token: str
    other_token: str  # read, limited to another workspace
    deploy_token: str

    def origin(self, app: str, ws: str = "ws") -> str:
        return f"http://{app}--{ws}.apps.localhost:{self.port}"

    def get(
        self, path: str, token: str | None = None, app: str = "tiny", **kwargs: Any
    ) -> httpx.Response:
        """GET `path` on an app's own origin."""
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.get(self.origin(app) + path, headers=headers, timeout=10, **kwargs)

    def add_app(
        self, ref: str, launcher: str, port: int | None, base_path: str | None, ws_name: str = "ws"
    ) -> str:
        definition = samples.job(samples.TINY_API)
        definition["job_ref"] = ref
        definition["entry_point"]["launcher"] = launcher
        with self.ctl.db.session() as session:
            ws = session.query(Workspace).filter_by(name=ws_name).one_or_none()
            if ws is None:
                ws = Workspace(name=ws_name, created_at=utcnow())
                session.add(ws)
                session.flush()
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
def world(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("proxy")
    port = free_port()
    url = new_database_url(engine, tmp)
    ctl = Controller(Settings(data_dir=tmp, db_url=url, start_loops=False, port=port))
    with ctl.db.session() as session:
        ws = Workspace(name="ws", created_at=utcnow(), deployment_version="a" * 40)
        other = Workspace(name="other", created_at=utcnow())
        session.add_all([ws, other])
        session.flush()
        read, _ = auth.create(session, "reader", "read", ws)
        limited, _ = auth.create(session, "elsewhere", "read", other)
        deploy, _ = auth.create(session, "deployer", "deploy", ws)
    app = create_asgi(ctl.settings, ctl)
    with Served(UPSTREAM) as upstream, Served(app, port) as dockyard:
        w = World(ctl, dockyard.url, port, upstream.port, read, limited, deploy)
        w.add_app("jobs.api.tiny", samples.JOB_LAUNCHER, upstream.port, None)
        # a run started before apps had origins of their own: marimo with a base path
        w.add_app("jobs.nb", MARIMO, upstream.port, "/apps/ws/nb")
        w.add_app("jobs.api.sleepy", samples.JOB_LAUNCHER, None, None)
        yield w
    ctl.db.dispose()


def session_cookie(world: World, token: str | None = None) -> str:
    return sessions.login(world.ctl, token or world.read_token)


def goes_on_to(page: httpx.Response) -> str:
    """Where the dashboard's sign-in page sends the browser (by itself, at once)."""
    assert page.status_code == 200, page.text
    assert '<meta http-equiv="refresh" content="0;url=' in page.text
    return html.unescape(page.text.split('<a href="', 1)[1].split('"', 1)[0])


def sign_in(world: World, app: str, next_path: str = "/") -> httpx.Cookies:
    """The browser's way in: the dashboard's session, a one-time code, the app's cookie."""
    with httpx.Client(timeout=10) as browser:
        browser.cookies.set("dockyard_session", session_cookie(world), domain="127.0.0.1")
        start = browser.get(
            f"{world.url}/ui/app-session", params={"app": f"{app}--ws", "next": next_path}
        )
        handshake = browser.get(goes_on_to(start))
        assert handshake.status_code == 303, handshake.text
        assert handshake.headers["location"] == next_path
        return httpx.Cookies({"dockyard_app": handshake.cookies["dockyard_app"]})


# HTTP ---------------------------------------------------------------------------------------
def test_requests_reach_the_app_without_dockyards_credentials(world: World) -> None:
    response = world.get(
        "/echo/x?a=1&b=%2F",
        world.read_token,
        headers={"Cookie": "theme=dark; dockyard_session=1.2.3; dockyard_app=1.2.3.4; other=x"},
    )

    assert response.status_code == 200
    seen = response.json()
    assert seen["path"] == "/echo/x" and seen["query"] == "a=1&b=%2F"
    assert "authorization" not in seen["headers"]
    assert seen["headers"]["cookie"] == "theme=dark; other=x"
    assert "x-forwarded-prefix" not in seen["headers"]  # the app is at `/` of its origin
    assert seen["headers"]["x-forwarded-host"] == f"tiny--ws.apps.localhost:{world.port}"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"


def test_forwarded_headers_from_a_client_are_not_believed(world: World) -> None:
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
    forged["X-Forwarded-Host"] = "evil.example"

    seen = world.get("/echo", world.read_token, headers=forged).json()["headers"]

    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"tiny--ws.apps.localhost:{world.port}"


def test_a_run_started_with_a_base_path_still_gets_the_full_path(world: World) -> None:
    seen = world.get("/echo", world.read_token, app="nb").json()

    assert seen["path"] == "/apps/ws/nb/echo"


def test_methods_and_bodies_pass(world: World) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    response = httpx.post(
        world.origin("tiny") + "/upload",
        content=body,
        headers={"Authorization": f"Bearer {world.read_token}"},
    )

    seen = response.json()
    assert seen["method"] == "POST" and seen["path"] == "/upload"
    assert seen["body_len"] == len(body)
    assert seen["body_sha"] == hashlib.sha256(body).hexdigest()


def test_the_old_urls_on_the_dashboard_redirect_to_the_apps_origin(world: World) -> None:
    bearer = {"Authorization": f"Bearer {world.read_token}"}
    cookie = {"Cookie": f"dockyard_session={session_cookie(world)}"}

    root = httpx.get(f"{world.url}/apps/ws/tiny?x=1", headers=bearer)
    deep = httpx.post(f"{world.url}/apps/ws/api.tiny/up/load?y=%2F", headers=cookie)
    anonymous = httpx.get(f"{world.url}/apps/ws/tiny/a", headers={"Accept": "text/html"})

    assert root.status_code == 307 and root.headers["location"] == world.origin("tiny") + "/?x=1"
    assert deep.status_code == 307
    assert deep.headers["location"] == world.origin("tiny") + "/up/load?y=%2F"
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/ui/login?next=%2Fapps%2Fws%2Ftiny%2Fa"
    assert httpx.get(f"{world.url}/apps/ws/tiny/").status_code == 401
    assert httpx.get(f"{world.url}/apps/other/tiny/", headers=bearer).status_code == 403


def test_redirects_to_the_apps_own_address_and_cookies_stay_on_its_host(world: World) -> None:
    redirect = world.get("/redirect", world.read_token)
    cookies = world.get("/cookies", world.read_token)

    assert redirect.headers["location"] == "/t?x=1"
    set_cookies = cookies.headers.get_list("set-cookie")
    assert len(set_cookies) == 1  # the forged session and app cookies are dropped
    assert set_cookies[0].startswith("app_cookie=1") and "Path=/" in set_cookies[0]
    assert "domain" not in set_cookies[0].lower()  # host-only: never for a neighbour
    # the proxy keeps no cookie jar: what the app set for one client never reaches another
    assert "cookie" not in world.get("/echo", world.read_token).json()["headers"]


def test_a_redirect_off_the_apps_origin_is_not_passed_on(world: World) -> None:
    for target in ("//evil.example/x", "/\\evil.example", "https://evil.example/"):
        response = world.get("/go", world.read_token, params={"to": target})
        assert response.status_code == 502, target
        assert "location" not in response.headers
        assert "outside its own origin" in response.json()["error"]
    inside = world.get("/go", world.read_token, params={"to": world.origin("tiny") + "/in"})
    assert inside.status_code == 302 and inside.headers["location"] == world.origin("tiny") + "/in"


def test_event_streams_arrive_as_they_are_sent(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.read_token}"}
    arrivals = []
    start = time.monotonic()
    with httpx.stream("GET", world.origin("tiny") + "/events", headers=headers) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic() - start)

    assert len(arrivals) == 3
    assert arrivals[0] < arrivals[2] - 0.5  # the first event was not held back until the end


def test_a_large_response_is_passed_whole(world: World) -> None:
    response = world.get("/big", world.read_token)

    assert len(response.content) == 4 << 20


def test_a_dot_dot_path_is_refused(world: World) -> None:
    # sent as is (httpx would resolve the dots before sending)
    connection = http.client.HTTPConnection("127.0.0.1", world.port)
    headers = {
        "Authorization": f"Bearer {world.read_token}",
        "Host": f"tiny--ws.apps.localhost:{world.port}",
    }
    for path in ("/x/../../echo", "/%2e%2e/echo"):
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 400, path
    connection.close()


def test_nothing_of_the_dashboard_answers_on_an_apps_host(world: World) -> None:
    bearer = {"Authorization": f"Bearer {world.read_token}"}
    for path in ("/api/v1/workspaces", "/ui/", "/git/ws.git/info/refs", "/healthz"):
        answer = httpx.get(world.origin("tiny") + path, headers=bearer)
        assert answer.status_code == 200 and answer.json()["path"] == path  # the app's own


# who may pass -------------------------------------------------------------------------------
def test_without_credentials_a_browser_goes_to_sign_in_on_the_dashboard(world: World) -> None:
    response = world.get("/a?b=1", headers={"Accept": "text/html,*/*"})

    assert response.status_code == 303
    assert response.headers["location"] == (
        f"{world.url}/ui/app-session?app=tiny--ws&next=%2Fa%3Fb%3D1"
    )


def test_without_credentials_an_api_client_gets_401(world: World) -> None:
    response = world.get("/")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "sign in first" in response.json()["error"]


def test_a_wrong_or_foreign_token_is_refused(world: World) -> None:
    assert world.get("/", "dy_not_a_token").status_code == 401
    assert world.get("/", world.other_token).status_code == 403
    # no such app: 404 for a token that sees every workspace, 403 for one limited to one
    with world.ctl.db.session() as session:
        everywhere, _ = auth.create(session, "everywhere", "read", None)
    assert world.get("/", everywhere, app="nope").status_code == 404
    assert world.get("/", world.read_token, app="nope").status_code == 403


def test_two_apps_with_one_host_name_are_refused(world: World) -> None:
    for ws_name in ("twin-ws", "twin_ws"):  # both are `twin-ws` in a host name
        world.add_app("jobs.twin", samples.JOB_LAUNCHER, world.upstream_port, None, ws_name)
    with world.ctl.db.session() as session:
        everywhere, _ = auth.create(session, "twins", "read", None)

    answer = httpx.get(
        f"http://twin--twin-ws.apps.localhost:{world.port}/",
        headers={"Authorization": f"Bearer {everywhere}"},
    )

    assert answer.status_code == 409
    assert "share the host name twin--twin-ws; rename one" in answer.json()["error"]


def test_the_dashboards_session_cookie_is_not_accepted_on_an_apps_host(world: World) -> None:
    cookie = {"Cookie": f"dockyard_session={session_cookie(world)}"}

    assert world.get("/echo", headers=cookie).status_code == 401


def test_signing_in_gives_a_cookie_for_one_app_only(world: World) -> None:
    cookies = sign_in(world, "tiny", "/echo?a=1")

    seen = httpx.get(world.origin("tiny") + "/echo", cookies=cookies)
    assert seen.status_code == 200 and "cookie" not in seen.json()["headers"]
    assert httpx.get(world.origin("nb") + "/echo", cookies=cookies).status_code == 401
    cookie = cookies["dockyard_app"]
    assert httpx.get(world.url + "/ui/", cookies={"dockyard_session": cookie}).status_code == 303


def test_a_sign_in_code_works_once_and_for_its_app_only(world: World) -> None:
    with httpx.Client(timeout=10) as browser:
        browser.cookies.set("dockyard_session", session_cookie(world), domain="127.0.0.1")
        start = browser.get(f"{world.url}/ui/app-session", params={"app": "tiny--ws"})
    handshake = goes_on_to(start)
    elsewhere = handshake.replace(world.origin("tiny"), world.origin("nb"))

    assert httpx.get(elsewhere).status_code == 400  # bound to the app it was made for
    assert httpx.get(handshake).status_code == 400  # … and spent by that attempt
    with httpx.Client(timeout=10) as browser:
        browser.cookies.set("dockyard_session", session_cookie(world), domain="127.0.0.1")
        start = browser.get(f"{world.url}/ui/app-session", params={"app": "tiny--ws"})
    code_url = goes_on_to(start)
    first, again = httpx.get(code_url), httpx.get(code_url)
    assert first.status_code == 303 and "dockyard_app" in first.cookies
    assert again.status_code == 400 and "set-cookie" not in again.headers


def test_signing_in_needs_the_role_on_the_apps_workspace(world: World) -> None:
    with httpx.Client(timeout=10) as browser:
        cookie = session_cookie(world, world.other_token)
        browser.cookies.set("dockyard_session", cookie, domain="127.0.0.1")
        refused = browser.get(f"{world.url}/ui/app-session", params={"app": "tiny--ws"})
        scripted = browser.get(
            f"{world.url}/ui/app-session",
            params={"app": "tiny--ws"},
            headers={"Sec-Fetch-Mode": "cors"},
        )
    anonymous = httpx.get(f"{world.url}/ui/app-session", params={"app": "tiny--ws"})

    assert refused.status_code == 403 and "dockyard_app" not in refused.text
    assert scripted.status_code == 403
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/ui/login")


def test_the_apps_cookie_from_another_origin_is_refused(world: World) -> None:
    cookies = sign_in(world, "tiny")
    neighbour = {"Origin": world.origin("nb")}

    refused = httpx.post(world.origin("tiny") + "/echo", cookies=cookies, headers=neighbour)
    own = httpx.post(
        world.origin("tiny") + "/echo", cookies=cookies, headers={"Origin": world.origin("tiny")}
    )
    bearer = world.get("/echo", world.read_token, headers=neighbour)

    assert refused.status_code == 403 and "may not use this app's sign-in" in refused.text
    assert own.status_code == 200
    assert bearer.status_code == 200  # a token in the request is no ambient credential


def test_the_apps_api_needs_read_to_serve_and_deploy_to_share(world: World) -> None:
    def call(method: str, path: str, token: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.request(
            method, f"{world.url}/api/v1/workspaces/ws/apps{path}", headers=headers
        )

    listed = call("GET", "", world.read_token).json()
    assert {a["name"]: a["status"] for a in listed}["tiny"] == "running"
    served = call("POST", "/tiny", world.read_token).json()
    assert served["url"] == world.origin("tiny") + "/" and served["run"]["status"] == "running"
    assert call("POST", "/tiny/links", world.read_token).status_code == 403
    made = call("POST", "/tiny/links", world.deploy_token)
    assert made.status_code == 201 and made.json()["token"].startswith("dyp_")
    assert made.json()["url"] == world.origin("tiny") + "/p/" + made.json()["token"] + "/"
    assert "token" not in call("GET", "/tiny/links", world.deploy_token).json()[0]
    assert call("DELETE", "/tiny/links", world.deploy_token).json()["revoked"][0]["active"] is False
    assert call("POST", "/tiny/links", world.other_token).status_code == 403


# start on demand ----------------------------------------------------------------------------
def test_an_app_without_a_run_is_started_once_and_answers_starting(world: World) -> None:
    api = world.get("/", world.read_token, app="sleepy")
    again = world.get("/x", world.read_token, app="sleepy")
    page = world.get("/", world.read_token, app="sleepy", headers={"Accept": "text/html"})

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

    response = world.get("/", world.read_token, app="silent")

    assert response.status_code == 503
    assert response.json()["status"] == "starting"


# WebSockets ---------------------------------------------------------------------------------
def ws_url(world: World, app: str, path: str = "/ws") -> str:
    return world.origin(app).replace("http", "ws", 1) + path


def test_websockets_pass_both_ways_with_the_subprotocol(world: World) -> None:
    headers = {
        "Authorization": f"Bearer {world.read_token}",
        "Cookie": "dockyard_session=1.2.3; app=1",
    }
    with ws_connect(ws_url(world, "nb"), additional_headers=headers, subprotocols=["marimo"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "marimo"
        assert ws.recv(timeout=5) == "cookie=app=1"
        ws.send("hello")
        assert ws.recv(timeout=5) == "echo:hello"


def test_a_websocket_with_the_apps_cookie_from_its_own_origin_connects(world: World) -> None:
    cookies = sign_in(world, "tiny")
    headers = {
        "Cookie": f"dockyard_app={cookies['dockyard_app']}",
        "Origin": world.origin("tiny"),
    }
    with ws_connect(ws_url(world, "tiny"), additional_headers=headers) as ws:
        assert ws.recv(timeout=5) == "cookie="  # the app never sees the app cookie


def test_a_websocket_from_another_origin_is_refused(world: World) -> None:
    cookies = sign_in(world, "tiny")
    for origin in (world.origin("nb"), "http://evil.example", "null"):
        headers = {"Cookie": f"dockyard_app={cookies['dockyard_app']}", "Origin": origin}
        with pytest.raises(InvalidStatus, match="403"):
            ws_connect(ws_url(world, "tiny"), additional_headers=headers)
    bearer = {"Authorization": f"Bearer {world.read_token}", "Origin": "http://evil.example"}
    with pytest.raises(InvalidStatus, match="403"):
        ws_connect(ws_url(world, "tiny"), additional_headers=bearer)


def test_a_websocket_without_credentials_is_refused(world: World) -> None:
    with pytest.raises(InvalidStatus, match="403"):
        ws_connect(ws_url(world, "nb"))


# public links -------------------------------------------------------------------------------
def deployer(world: World) -> auth.Principal:
    with world.ctl.db.session() as session:
        return auth.authenticate(session, world.deploy_token)


def test_a_public_link_serves_its_app_without_login_until_revoked(world: World) -> None:
    link = app_service.create_link(world.ctl, deployer(world), "ws", "tiny", "demo")
    assert link["url"] == world.origin("tiny") + link["path"]

    served = httpx.get(link["url"] + "echo?z=1")
    assert served.status_code == 200
    assert served.json()["path"] == "/echo"
    assert served.json()["headers"]["x-forwarded-prefix"] == link["path"].rstrip("/")
    assert httpx.get(link["url"] + "redirect").headers["location"] == link["path"] + "t?x=1"
    old = httpx.get(f"{world.url}{link['path']}echo?z=1")  # the old URL, on the dashboard
    assert old.status_code == 307 and old.headers["location"] == link["url"] + "echo?z=1"

    app_service.revoke_links(world.ctl, deployer(world), "ws", "tiny", link["id"])

    assert httpx.get(link["url"] + "echo").status_code == 404
    assert httpx.get(f"{world.url}{link['path']}echo").status_code == 404


def test_a_public_link_reaches_nothing_but_its_app(world: World) -> None:
    link = app_service.create_link(world.ctl, deployer(world), "ws", "nb", None)
    token = link["token"]
    nb = world.origin("nb")

    assert httpx.get(f"{nb}/p/{token}/echo").json()["path"] == "/apps/ws/nb/echo"
    assert httpx.get(f"{nb}/p/{token}x/echo").status_code == 404
    assert httpx.get(f"{nb}/p/dyp_guess/echo").status_code == 404
    # not on another app's origin, and the link is no credential anywhere else
    assert httpx.get(f"{world.origin('tiny')}/p/{token}/echo").status_code == 404
    cookie = {"Cookie": f"dockyard_app={token}"}
    assert httpx.get(f"{nb}/", headers=cookie).status_code == 401
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{world.url}/api/v1/workspaces", headers=bearer).status_code == 401


def test_revoking_a_link_closes_its_open_websockets(world: World) -> None:
    link = app_service.create_link(world.ctl, deployer(world), "ws", "nb", None)
    url = link["url"].replace("http", "ws", 1) + "ws"
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
    link = app_service.create_link(world.ctl, deployer(world), "ws", "tiny", None)
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
    world.get("/echo", world.read_token, app="idle")
    now = utcnow()

    assert run_id not in apps.monitor.sweep(now + timedelta(seconds=200))  # window: 300 s
    assert run_id in apps.monitor.sweep(now + timedelta(seconds=301))
    with world.ctl.db.session() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.status == "cancelling" and run.stop_reason == "idle"


def test_an_open_websocket_keeps_an_app_from_idling(world: World) -> None:
    run_id = world.add_app("jobs.busy", MARIMO, world.upstream_port, None)
    headers = {"Authorization": f"Bearer {world.read_token}"}
    with ws_connect(ws_url(world, "busy"), additional_headers=headers) as ws:
        ws.recv(timeout=5)
        assert run_id not in world.ctl.apps.monitor.sweep(utcnow() + timedelta(hours=3))
    deadline = time.monotonic() + 5
    while world.ctl.apps.activity.state(run_id)[1] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_id in world.ctl.apps.monitor.sweep(utcnow() + timedelta(seconds=301))
