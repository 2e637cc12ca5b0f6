"""Apps behind the server's proxy, for real, each on its own origin
(`http://<app>--apps.apps.localhost:<port>/`): the example workspace's marimo notebook in
headless Chromium (page and WebSocket, signed in through the dashboard), its FastMCP server
with fastmcp's own client, public links, idle stop and start on demand, refused requests,
the old URLs' redirects, and `dockyard serve`.

One server and one deploy for the module: both apps share one environment, built once.
"""

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import EXAMPLES, Cli, copy_workspace, make_server, wait_run

IDLE_S = 6  # the server's idle window (the MCP job declares its own: 10 minutes)
TERMINAL = ("completed", "failed", "cancelled", "skipped")
NOTEBOOK = "weather_notebook"
TOOLS = "weather_tools"


@pytest.fixture(scope="module")
def apps_cli(tmp_path_factory: pytest.TempPathFactory, cache_home: Path) -> Iterator[Cli]:
    tmp = tmp_path_factory.mktemp("apps")
    server = make_server(tmp, DOCKYARD_APP_IDLE_S=str(IDLE_S), DOCKYARD_PREWARM_S="0").start()
    cli = Cli(server, cache_home, tmp / "config", "apps")
    ws = copy_workspace(EXAMPLES / "apps_workspace", tmp / "apps_workspace")
    cli.run("deploy", cwd=ws, timeout=600)
    yield cli
    stop_apps(cli)
    server.stop()


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


def app_url(cli: Cli, name: str) -> str:
    label = f"{name.replace('_', '-')}--{cli.workspace}"
    return f"http://{label}.apps.localhost:{cli.server.port}/"


def bearer(cli: Cli) -> dict[str, str]:
    return {"Authorization": f"Bearer {cli.server.token}"}


def serve(cli: Cli, name: str) -> dict[str, Any]:
    served: dict[str, Any] = cli.json("serve", name)
    return served


# dockyard serve, auth ---------------------------------------------------------------------------
def test_serve_prints_the_proxy_url_and_it_answers(apps_cli: Cli) -> None:
    text = apps_cli.run("serve", NOTEBOOK).stdout
    served = serve(apps_cli, NOTEBOOK)  # the running instance, found again

    assert served["url"] == app_url(apps_cli, NOTEBOOK)
    assert f"serving at {served['url']}" in text
    assert served["status"] == "running" and served["job_ref"] == "jobs.weather_notebook"
    assert "base_path" not in served["entry_point"]["run_args"]  # at `/` of its own origin
    page = httpx.get(served["url"], headers=bearer(apps_cli), timeout=30)
    assert page.status_code == 200 and "<marimo-version" in page.text
    # the example sets no `asset_url`: the front end comes from marimo's own server
    assert "cdn.jsdelivr.net" not in page.text


def test_requests_without_credentials_are_refused(apps_cli: Cli) -> None:
    url = app_url(apps_cli, NOTEBOOK)

    api = httpx.get(url, timeout=10)
    browser = httpx.get(url, headers={"Accept": "text/html"}, timeout=10)
    wrong = httpx.get(url, headers={"Authorization": "Bearer dy_nope"}, timeout=10)

    assert api.status_code == 401 and api.headers["www-authenticate"] == "Bearer"
    assert browser.status_code == 303  # to sign in on the dashboard, then back
    sign_in = f"{apps_cli.server.url}/ui/app-session?app=weather-notebook--apps&next=%2F"
    assert browser.headers["location"] == sign_in
    assert wrong.status_code == 401


def test_the_old_url_redirects_to_the_apps_own_origin(apps_cli: Cli) -> None:
    old = f"{apps_cli.server.url}/apps/{apps_cli.workspace}/{NOTEBOOK}/x?y=1"

    moved = httpx.get(old, headers=bearer(apps_cli), timeout=10)

    assert moved.status_code == 307
    assert moved.headers["location"] == app_url(apps_cli, NOTEBOOK) + "x?y=1"


# the notebook in a real browser -------------------------------------------------------------
def open_notebook(
    browser: Any,
    url: str,
    headers: dict[str, str] | None = None,
    on_load: Callable[[Any], None] | None = None,
    token: str | None = None,
) -> Any:
    """A new page on the notebook, once marimo has rendered its cells through the kernel
    (which talks to the page over the WebSocket only); returns (page, websockets). With
    `token`, the page first goes through the dashboard's login form (then the app's own
    sign-in, by redirects)."""
    context = browser.new_context(extra_http_headers=headers or {})
    page = context.new_page()
    sockets: list[Any] = []
    page.on("websocket", lambda socket: sockets.append(socket))
    if on_load is not None:
        page.on("domcontentloaded", on_load)
    page.goto(url, wait_until="domcontentloaded", timeout=120_000)
    if token is not None:
        page.fill("#token", token)
        page.click("form[action='/ui/login'] button")
    page.get_by_text("Warmest over 7 days").wait_for(timeout=120_000)
    return page, sockets


def test_the_notebook_loads_in_chromium_and_its_websocket_connects(
    apps_cli: Cli, chromium: Any
) -> None:
    url = app_url(apps_cli, NOTEBOOK)

    # not logged in: the dashboard's login page, then back to the app with its own cookie
    page, sockets = open_notebook(chromium, url, token=apps_cli.server.token)

    assert page.url == url
    cookies = {c["name"]: c["domain"] for c in page.context.cookies()}
    app_host = url.split("/")[2].split(":")[0]
    assert cookies == {"dockyard_session": "127.0.0.1", "dockyard_app": app_host}

    kernel = [s for s in sockets if "/ws" in s.url]
    assert kernel and not kernel[-1].is_closed()
    assert kernel[-1].url.startswith(url.replace("http", "ws", 1))
    # a change in the page goes to the kernel and the new output comes back
    page.get_by_role("slider").first.focus()
    page.keyboard.press("ArrowRight")
    page.get_by_text("Warmest over 8 days").wait_for(timeout=30_000)
    page.context.close()


def log_after(server_log: Path, offset: int, line: str, timeout: float = 30) -> str:
    """The server's log from `offset` on, once `line` is in it."""
    deadline = time.monotonic() + timeout
    while True:
        text = server_log.read_bytes()[offset:].decode("utf-8", "replace")
        if line in text or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def test_closing_a_notebook_tab_is_a_normal_end_in_the_server_log(
    apps_cli: Cli, chromium: Any
) -> None:
    server_log = apps_cli.server.log
    offset = server_log.stat().st_size
    page, sockets = open_notebook(chromium, app_url(apps_cli, NOTEBOOK), bearer(apps_cli))
    assert [s for s in sockets if "/ws" in s.url]

    page.close()  # the tab goes away, and its WebSocket with it

    text = log_after(server_log, offset, "app websocket closed")
    assert "app websocket closed" in text and "by=client" in text
    assert "Traceback" not in text and " ERROR " not in text
    page.context.close()


def test_a_public_link_serves_the_notebook_without_login_until_revoked(
    apps_cli: Cli, chromium: Any
) -> None:
    link = apps_cli.json("app", "link", "create", NOTEBOOK, "--note", "demo")
    assert link["url"].startswith(app_url(apps_cli, NOTEBOOK) + "p/dyp_")
    assert [x["note"] for x in apps_cli.json("app", "link", "list", NOTEBOOK)] == ["demo"]

    page, sockets = open_notebook(chromium, link["url"])  # no credentials at all
    kernel = [s for s in sockets if "/ws" in s.url]
    origin = app_url(apps_cli, NOTEBOOK).replace("http", "ws", 1)
    assert kernel and kernel[-1].url.startswith(origin + "p/")
    assert not kernel[-1].is_closed()

    apps_cli.run("app", "link", "revoke", NOTEBOOK, str(link["id"]))

    deadline = time.monotonic() + 10
    while not kernel[-1].is_closed() and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert kernel[-1].is_closed()  # the open WebSocket was closed at once
    assert httpx.get(link["url"], timeout=10).status_code == 404
    assert [x["active"] for x in apps_cli.json("app", "link", "list", NOTEBOOK)] == [False]
    page.context.close()


def test_a_stopped_app_starts_when_a_browser_asks_for_it(apps_cli: Cli, chromium: Any) -> None:
    apps_cli.run("cancel", NOTEBOOK)
    stopped = wait_run(apps_cli, NOTEBOOK, timeout=60)
    assert stopped["status"] == "cancelled"
    titles: list[str] = []

    page, _ = open_notebook(
        chromium,
        app_url(apps_cli, NOTEBOOK),
        bearer(apps_cli),
        on_load=lambda p: titles.append(p.title()),
    )

    assert titles[0] == "Starting weather_notebook…"  # the page that reloads itself
    assert apps_cli.json("job-run", NOTEBOOK, "info")["number"] == stopped["number"] + 1
    page.context.close()


# the MCP server with a real MCP client ------------------------------------------------------
def list_and_call(url: str, headers: dict[str, str]) -> tuple[set[str], str]:
    """fastmcp's client over streamable HTTP: the tools' names and one call's result (in a
    thread of its own: Playwright's sync API keeps an event loop in this one)."""
    from fastmcp import Client
    from fastmcp.client.transports import StreamableHttpTransport

    async def session() -> tuple[set[str], str]:
        async with Client(StreamableHttpTransport(url, headers=headers)) as client:
            tools = {t.name for t in await client.list_tools()}
            result = await client.call_tool("warmest", {"days": 7})
        return tools, str(result.data)

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, session()).result(timeout=60)


def test_an_mcp_client_lists_and_calls_tools_through_the_proxy(apps_cli: Cli) -> None:
    served = serve(apps_cli, TOOLS)
    assert served["timeout_s"] == 600  # its own idle_timeout="10m" is its idle window
    url = app_url(apps_cli, TOOLS) + "mcp"

    tools, warmest = list_and_call(url, bearer(apps_cli))

    assert tools == {"cities", "forecast", "warmest"}
    assert warmest == "Lisbon"
    assert httpx.post(url, json={}, timeout=10).status_code == 401  # not without a token


def test_serve_of_an_mcp_app_prints_its_mcp_endpoint(apps_cli: Cli) -> None:
    endpoint = app_url(apps_cli, TOOLS) + "mcp"

    text = apps_cli.run("serve", TOOLS).stdout

    assert f"MCP endpoint (streamable HTTP): {endpoint}" in text
    assert serve(apps_cli, TOOLS)["mcp_url"] == endpoint
    assert serve(apps_cli, NOTEBOOK)["mcp_url"] is None


def test_an_mcp_client_works_through_a_public_link(apps_cli: Cli) -> None:
    link = apps_cli.json("app", "link", "create", TOOLS)

    tools, _ = list_and_call(link["url"] + "mcp", {})

    assert "forecast" in tools
    apps_cli.run("app", "link", "revoke", TOOLS)
    assert httpx.post(link["url"] + "mcp", json={}, timeout=10).status_code == 404


# idle stop and start on demand ----------------------------------------------------------------
def test_an_idle_app_is_stopped_and_starts_again_on_the_next_request(apps_cli: Cli) -> None:
    first = serve(apps_cli, NOTEBOOK)
    assert first["timeout_s"] == IDLE_S

    ended = wait_run(apps_cli, NOTEBOOK, first["number"], timeout=IDLE_S + 60)

    assert ended["status"] == "cancelled"
    assert ended["reason"] == f"stopped after {IDLE_S} s idle"
    url = app_url(apps_cli, NOTEBOOK)
    starting = httpx.get(url, headers={**bearer(apps_cli), "Accept": "text/html"}, timeout=10)
    assert starting.status_code == 503 and "Starting weather_notebook" in starting.text
    assert 'http-equiv="refresh"' in starting.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answer = httpx.get(url, headers=bearer(apps_cli), timeout=10)
        if answer.status_code == 200:
            break
        assert answer.headers.get("retry-after") == "2"
        time.sleep(0.5)
    assert answer.status_code == 200
    again = apps_cli.json("job-run", NOTEBOOK, "info")
    assert again["number"] > first["number"] and again["trigger"] == "http:"


def test_the_app_list_shows_urls_and_status(apps_cli: Cli) -> None:
    listed = {a["name"]: a for a in apps_cli.json("app", "list")}

    assert set(listed) >= {NOTEBOOK, TOOLS, "dashboard"}
    assert listed[TOOLS]["url"] == app_url(apps_cli, TOOLS)
    assert listed[TOOLS]["interface"] == "mcp"
    assert listed[NOTEBOOK]["category"] == "notebook"


# last: it deploys a configuration the notebook cannot load with ------------------------------
def test_serve_refuses_a_notebook_whose_front_end_is_on_an_unreachable_cdn(
    apps_cli: Cli, tmp_path: Path
) -> None:
    """The workspace points marimo's assets at dlt's CDN default explicitly (a configured value
    wins over dockyard's default); this machine cannot reach the CDN, so the page would be
    blank, and `serve` says so instead of printing a URL."""
    ws = copy_workspace(EXAMPLES / "apps_workspace", tmp_path / "apps_workspace")
    with (ws / ".dlt" / "config.toml").open("a") as config:
        config.write(
            "\n[jobs.weather_notebook.marimo]\n"
            'asset_url = "https://cdn.jsdelivr.net/npm/@marimo-team/frontend@{version}/dist"\n'
        )
    apps_cli.run("deploy", cwd=ws, timeout=600)
    apps_cli.run("cancel", NOTEBOOK, check=False)
    wait_run(apps_cli, NOTEBOOK, timeout=60)

    error = apps_cli.fails("serve", NOTEBOOK)

    assert error.startswith("error: jobs.weather_notebook answers, but its page at ")
    assert "https://cdn.jsdelivr.net/npm/@marimo-team/frontend@" in error
    assert "blank page" in error and "asset_url" in error
