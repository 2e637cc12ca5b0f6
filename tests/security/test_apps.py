"""Apps attacks against a real server, real app processes and a real Chromium
(docs/security.md, "Apps: their own origin, loopback only").

The hostile workspace's `apps_spy` is a page whose JavaScript acts for whoever views it;
`apps_echo` echoes what reaches it. The viewer is an admin logged in to the dashboard on
two host names: `127.0.0.1` and `dockyard.localhost`, which is the same *site* as the apps'
own origins (`*.apps.dockyard.localhost`), as `dockyard.example.org` and
`*.apps.example.org` would be: a browser sends a same-site request its SameSite=Lax cookies,
so only CSRF tokens, the `Origin` check and the separate origins stand in the way.
"""

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
import pytest

from tests.conftest import EXAMPLES, WORKSPACES, Cli, Server, copy_workspace, make_server
from tests.e2e.test_docker import BASE_IMAGE, CA, engine_ready
from tests.security.conftest import probes

TERMINAL = ("completed", "failed", "cancelled", "skipped")
WS = "hostile-apps"
APPS_DOMAIN = "apps.dockyard.localhost"


@dataclass
class Viewer:
    """An admin's browser, logged in to the dashboard on both of its host names."""

    server: Server
    context: Any
    dashboards: list[str]

    def new_page(self) -> Any:
        return self.context.new_page()


def start_server(tmp: Path, **env: str) -> Server:
    return make_server(tmp, DOCKYARD_PREWARM_S="0", DOCKYARD_APPS_DOMAIN=APPS_DOMAIN, **env).start()


def deploy_hostile(cli: Cli, tmp: Path) -> None:
    cli.run("workspace", "create", cli.workspace)
    cli.run("deploy", cwd=copy_workspace(WORKSPACES / "hostile", tmp / "hostile"), timeout=600)


def stop_apps(cli: Cli) -> None:
    """Runs outlive their server (a restarted server adopts them): stop the apps first."""
    cli.run("cancel", "interactive", check=False)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        active = [r for r in cli.json("job-run", "list") if r["status"] not in TERMINAL]
        if not active:
            return
        time.sleep(0.5)
    raise AssertionError(f"apps still running: {active}")


@pytest.fixture(scope="module")
def sec(tmp_path_factory: pytest.TempPathFactory, cache_home: Path) -> Iterator[Cli]:
    tmp = tmp_path_factory.mktemp("sec-apps")
    server = start_server(tmp)
    cli = Cli(server, cache_home, tmp / "config", WS)
    deploy_hostile(cli, tmp)
    yield cli
    stop_apps(cli)
    server.stop()


@pytest.fixture(scope="module")
def viewer(sec: Cli, chromium: Any) -> Iterator[Viewer]:
    context = chromium.new_context()
    context.set_default_timeout(60_000)
    dashboards = [sec.server.url, f"http://dockyard.localhost:{sec.server.port}"]
    page = context.new_page()
    for dashboard in dashboards:
        page.goto(f"{dashboard}/ui/login")
        page.fill("#token", sec.server.token)
        page.click("form[action='/ui/login'] button")
        page.wait_for_url("**/ui/w/**")
    page.close()
    yield Viewer(sec.server, context, dashboards)
    context.close()


def serve(cli: Cli, name: str) -> dict[str, Any]:
    served: dict[str, Any] = cli.json("serve", name)
    return served


def bearer(cli: Cli) -> dict[str, str]:
    return {"Authorization": f"Bearer {cli.server.token}"}


def token_names(cli: Cli) -> list[str]:
    return [t["name"] for t in cli.server.api("GET", "/api/v1/tokens").json()]


def websocket_url(app_url: str) -> str:
    return "ws" + app_url.removeprefix("http") + "ws"


# item 2: an app cannot act for the person viewing it ---------------------------------------
def test_an_apps_javascript_cannot_read_the_dashboard_or_mint_a_token(
    sec: Cli, viewer: Viewer
) -> None:
    echo, spy = serve(sec, "apps_echo"), serve(sec, "apps_spy")
    before = token_names(sec)
    page = viewer.new_page()
    page.goto(echo["url"])  # the viewer opens the other app first: its cookie is in the browser
    page.get_by_text("echo app").wait_for()
    params = {"ws": WS, "dash": ",".join(viewer.dashboards), "echo": websocket_url(echo["url"])}

    page.goto(spy["url"] + "?" + urlencode(params))
    page.wait_for_function("document.title === 'attack done'", timeout=90_000)
    attack: dict[str, str] = page.evaluate("window.attack")

    assert not [k for k, v in attack.items() if "csrf-read" in v or "minted" in v], attack
    for i, _ in enumerate(viewer.dashboards, start=1):  # another origin: nothing readable
        assert attack[f"read_{i}"] == attack[f"mint_{i}_include"] == "blocked", attack
    assert token_names(sec) == before  # nothing was minted, by any of the requests
    assert not attack["echo_ws"].startswith("open"), attack  # no WebSocket with its cookie
    # ordinary use still works: the page ran, its own requests reached it, and the viewer's
    # own WebSocket to the echo app (same origin) opens
    assert attack["own_echo"] == ""
    page.goto(echo["url"])
    own = page.evaluate(
        """() => new Promise((resolve) => {
            const s = new WebSocket(new URL("ws", location.href).href.replace("http", "ws"));
            s.onmessage = (e) => resolve(e.data); s.onclose = (e) => resolve("closed " + e.code);
        })"""
    )
    assert own == "cookies=-"  # and the app did not get the viewer's app cookie either
    page.close()


def test_the_viewers_dashboard_cookie_never_reaches_the_app(sec: Cli, viewer: Viewer) -> None:
    spy = serve(sec, "apps_spy")
    page = viewer.new_page()
    page.goto(spy["url"] + "echo")
    seen = json.loads(page.inner_text("body"))
    page.close()

    cookie_names = {c["name"] for c in viewer.context.cookies()}
    assert "dockyard_session" in cookie_names  # the viewer is logged in …
    assert "dockyard_session" not in seen["cookie"]  # … and the app never sees it
    assert "dockyard_app" not in seen["cookie"]
    reported = probes(sec, spy["run_id"]).get("apps_cookies", "-")
    assert "dockyard_session" not in reported and "dockyard_app" not in reported


def test_the_dashboards_session_cookie_is_not_accepted_on_an_app_host(sec: Cli) -> None:
    spy = serve(sec, "apps_spy")
    login = httpx.post(
        f"{sec.server.url}/ui/login",
        data={"token": sec.server.token},
        headers={"Origin": sec.server.url},
    )
    session = login.cookies["dockyard_session"]

    with_cookie = httpx.get(spy["url"], cookies={"dockyard_session": session}, timeout=10)
    with_token = httpx.get(spy["url"], headers=bearer(sec), timeout=10)

    assert with_cookie.status_code == 401 and "harmless app" not in with_cookie.text
    assert with_token.status_code == 200 and "harmless app" in with_token.text


def test_minting_a_token_needs_a_same_origin_origin_header(sec: Cli) -> None:
    dashboard = sec.server.url
    with httpx.Client(base_url=dashboard, timeout=10) as browser:
        browser.post("/ui/login", data={"token": sec.server.token}, headers={"Origin": dashboard})
        settings = browser.get(f"/ui/w/{WS}/settings").text
        csrf = settings.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        before = token_names(sec)

        answers = {
            origin: browser.post(
                f"/ui/w/{WS}/tokens",
                data={"name": f"via-{origin}", "role": "admin", "csrf_token": csrf},
                headers={"Origin": origin} if origin else {},
            )
            for origin in ("", "null", f"http://apps-spy--{WS}.{APPS_DOMAIN}:{sec.server.port}")
        }
        assert token_names(sec) == before, {o: a.status_code for o, a in answers.items()}
        for answer in answers.values():
            assert answer.status_code == 403 and "Origin" in answer.text

        made = browser.post(
            f"/ui/w/{WS}/tokens",
            data={"name": "made-here", "role": "read", "csrf_token": csrf},
            headers={"Origin": dashboard},
        )
    assert made.status_code == 200 and "new-token-value" in made.text
    assert token_names(sec) == [*before, "made-here"]


# item 13: redirects and forwarded headers ---------------------------------------------------
def leaves(app_url: str, location: str | None) -> bool:
    """Whether a browser following `location` from the app would land on another origin
    (browsers drop tabs and newlines and read `\\` as `/`)."""
    if location is None:
        return False
    cleaned = location.strip().replace("\t", "").replace("\n", "").replace("\r", "")
    cleaned = cleaned.replace("\\", "/")
    return urlsplit(urljoin(app_url, cleaned)).netloc != urlsplit(app_url).netloc


def test_an_app_cannot_redirect_its_viewers_off_its_origin(sec: Cli) -> None:
    spy = serve(sec, "apps_spy")
    targets = [
        "//evil.example/x",
        "/\\evil.example/x",
        "\\\\evil.example/x",
        "http://evil.example/x",
        "https://evil.example",
        "/\t/evil.example/x",
        f"{sec.server.url}/ui/",
    ]
    for target in targets:
        answer = httpx.get(spy["url"] + "go", params={"to": target}, headers=bearer(sec))
        assert not leaves(spy["url"], answer.headers.get("location")), (target, answer.headers)

    inside = httpx.get(spy["url"] + "go", params={"to": "/inside?a=1"}, headers=bearer(sec))
    assert inside.status_code == 302
    assert urljoin(spy["url"], inside.headers["location"]).startswith(spy["url"].rstrip("/"))
    assert inside.headers["location"].endswith("/inside?a=1")


def test_a_client_cannot_forge_forwarded_headers(sec: Cli) -> None:
    spy = serve(sec, "apps_spy")
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
    forged["X-Forwarded-Host"] = "evil.example"

    seen = httpx.get(spy["url"] + "echo", headers={**bearer(sec), **forged}).json()["headers"]
    login = httpx.post(
        f"{sec.server.url}/ui/login",
        data={"token": sec.server.token},
        headers={"Origin": sec.server.url, **forged},
    )

    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == urlsplit(spy["url"]).netloc
    cookie = login.headers["set-cookie"]
    assert "dockyard_session=" in cookie and "secure" not in cookie.lower()


# item 3: apps are reachable only through the proxy ------------------------------------------
def host_addresses() -> list[str]:
    """Every address of every interface of this machine (IPv4 and IPv6, link-local ones with
    their interface), from iproute2."""
    listed = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True)
    addresses = []
    for interface in json.loads(listed.stdout):
        for info in interface.get("addr_info", []):
            address = info["local"]
            if info["family"] == "inet6" and info.get("scope") == "link":
                address += f"%{interface['ifname']}"
            addresses.append(address)
    return addresses


def knock(address: str, port: int) -> str:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    target = socket.getaddrinfo(address, port, family, socket.SOCK_STREAM)[0][4]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(target)
        except ConnectionRefusedError:
            return "refused"
        except OSError as exc:
            return f"unreachable ({exc.__class__.__name__})"
        return "answered"


def assert_only_the_proxy_answers(cli: Cli, served: dict[str, Any]) -> None:
    port = int(served["entry_point"]["run_args"]["port"])
    outcomes = {address: knock(address, port) for address in host_addresses()}
    assert "127.0.0.1" in outcomes and len(outcomes) > 2, outcomes
    answered = sorted(a for a, outcome in outcomes.items() if outcome == "answered")
    assert answered == ["127.0.0.1"], (served["job_ref"], outcomes)  # the proxy's way in
    through = httpx.get(served["url"], headers=bearer(cli), timeout=30)
    assert through.status_code == 200, through.text


def test_apps_listen_on_loopback_only_with_the_local_executor(
    sec: Cli, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("sec-marimo")
    notebooks = Cli(sec.server, sec.cache_home, tmp / "config", "sec-marimo")
    notebooks.run("workspace", "create", notebooks.workspace)
    ws = copy_workspace(EXAMPLES / "apps_workspace", tmp / "apps_workspace")
    notebooks.run("deploy", cwd=ws, timeout=600)
    try:
        # dlt's marimo launcher passes --host 0.0.0.0; apps_spy binds 0.0.0.0, apps_echo `::`
        for cli, name in [(notebooks, "weather_notebook"), (sec, "apps_spy"), (sec, "apps_echo")]:
            served = serve(cli, name)
            assert served["executor"] == "local"
            assert_only_the_proxy_answers(cli, served)
    finally:
        stop_apps(notebooks)


@pytest.fixture(scope="module")
def docker_sec(tmp_path_factory: pytest.TempPathFactory, cache_home: Path) -> Iterator[Cli]:
    missing = engine_ready()
    if missing is not None:
        import os

        if os.environ.get("CI"):
            pytest.fail(f"Docker tests cannot run in CI: {missing}")
        pytest.skip(f"Docker tests need a Docker engine: {missing}")
    tmp = tmp_path_factory.mktemp("sec-apps-docker")
    env = {"DOCKYARD_EXECUTOR": "docker", "DOCKYARD_DOCKER_BASE_IMAGE": BASE_IMAGE}
    if Path(CA).exists():
        env["DOCKYARD_DOCKER_CA_BUNDLE"] = CA
    server = start_server(tmp, **env)
    cli = Cli(server, cache_home, tmp / "config", "hostile-docker")
    deploy_hostile(cli, tmp)
    yield cli
    stop_apps(cli)
    server.stop()


def test_apps_are_published_on_loopback_only_with_the_docker_executor(docker_sec: Cli) -> None:
    served = serve(docker_sec, "apps_spy")
    assert served["executor"] == "docker"
    inspect = subprocess.run(
        ["docker", "ps", "--filter", f"label=dockyard.run_id={served['run_id']}", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    (container,) = inspect.stdout.split()
    bindings = json.loads(
        subprocess.run(
            ["docker", "inspect", "-f", "{{json .HostConfig.PortBindings}}", container],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert {b["HostIp"] for v in bindings.values() for b in v} == {"127.0.0.1"}, bindings

    assert_only_the_proxy_answers(docker_sec, served)
