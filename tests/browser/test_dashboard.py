"""The dashboard in a real Chromium against a real server with tests/workspaces/basic deployed.

The tests of this module share one server and workspace and run in file order (runs made by
one are seen by the next). Waits are generous (a first run builds its environment); nothing
is timed.
"""

import re
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import WORKSPACE, Dash, log_in, screenshot
from tests.conftest import wait_run

SLOW_MS = 300_000  # a first run of the workspace builds its environment


def test_without_a_session_every_page_leads_to_the_login_page(dash: Dash, context: Any) -> None:
    page = context.new_page()
    page.goto(dash.url("/jobs?tag=quick"))
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui%2Fw%2Fdash%2Fjobs"))
    screenshot(page, "login")

    page.fill("#token", "dy_not_a_real_token")
    page.click("form[action='/ui/login'] button")
    expect(page.locator(".banner.bad")).to_contain_text("invalid or revoked token")

    page.fill("#token", dash.server.token)
    page.click("form[action='/ui/login'] button")
    expect(page).to_have_url(dash.url("/jobs?tag=quick"))  # back where it started
    cookie = next(c for c in context.cookies() if c["name"] == "dockyard_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert dash.server.token not in cookie["value"]


def test_the_jobs_page_groups_by_tag_and_filters_without_a_reload(dash: Dash, context: Any) -> None:
    page = context.new_page()
    log_in(page, dash)
    expect(page.locator("select[name=ws]")).to_have_value(WORKSPACE)
    page.click("nav >> text=Jobs")
    groups = page.locator("section.group h2 .tag")
    expect(groups).to_have_text(["load", "quick", "untagged"])
    quick = page.locator("section.group", has=page.locator(".tag", has_text="quick"))
    expect(quick.locator("tr[data-job]")).to_have_count(2)
    expect(quick).to_contain_text("after hello succeeds")  # the trigger in words
    screenshot(page, "jobs")

    page.evaluate("window.notReloaded = true")
    page.fill("input[name=q]", "nap")
    expect(page.locator("tr[data-job]")).to_have_count(1)
    expect(page.locator("tr[data-job]")).to_have_attribute("data-job", "jobs.__deployment__.napper")
    assert page.evaluate("window.notReloaded") is True  # htmx swapped the table only
    expect(page).to_have_url(re.compile(r"q=nap"))

    page.select_option("select[name=type]", "interactive")
    page.fill("input[name=q]", "")
    expect(page.locator("tr[data-job]")).to_have_count(2)  # tiny_api, dlt's dashboard
    page.fill("input[name=q]", "tiny")
    expect(page.locator("tr[data-job]")).to_have_count(1)
    page.click("tr[data-job] a")
    origin = f"http://tiny-api--{WORKSPACE}.apps.localhost:{dash.server.port}/"
    expect(page.locator("a.button", has_text="open app")).to_have_attribute("href", origin)


def nap_numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"nap (\d+)", text)]


def test_run_now_streams_the_log_live_and_cancel_stops_the_run(dash: Dash, context: Any) -> None:
    page = context.new_page()
    log_in(page, dash)
    page.goto(dash.url("/jobs/jobs.__deployment__.napper"))
    page.click("button:has-text('Run now')")
    expect(page).to_have_url(re.compile(r"/ui/w/dash/runs/[0-9a-f-]{36}$"))
    log = page.locator("#log")
    expect(log).to_contain_text("nap 3", timeout=SLOW_MS)
    expect(page.locator("#run-status")).to_have_text("running")
    seen = int(log.get_attribute("data-lines") or "0")
    # the page is never reloaded: lines keep arriving over the event stream, across the
    # stream's reconnects (each lasts 5 s), while the run is still running
    page.wait_for_function(
        "n => Number(document.getElementById('log').dataset.lines) > n + 80",
        arg=seen,
        timeout=120_000,
    )
    expect(page.locator("#run-status")).to_have_text("running")
    numbers = nap_numbers(log.inner_text())
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "lost or repeated"
    screenshot(page, "run-live")

    page.click("button:has-text('Cancel run')")
    expect(page.locator("#run-status")).to_have_text("cancelled", timeout=60_000)
    expect(page.locator("#log-state")).to_contain_text("run cancelled", timeout=30_000)
    expect(page.locator("button:has-text('Cancel run')")).to_have_count(0)


def test_a_finished_run_shows_its_result_versions_and_load_summary(
    dash: Dash, context: Any
) -> None:
    page = context.new_page()
    log_in(page, dash)
    for job in ("hello", "load_numbers"):
        page.goto(dash.url(f"/jobs/jobs.__deployment__.{job}"))
        page.click("button:has-text('Run now')")
        expect(page.locator("#run-status")).to_have_text("completed", timeout=SLOW_MS)
    expect(page.locator("#run-outputs")).to_contain_text("numbers_pipeline")
    loads = page.locator("#run-outputs table.loads")
    expect(loads.locator("tr", has_text="numbers")).to_contain_text("5")
    expect(page.locator("#run-summary")).to_contain_text("code 0")
    expect(page.locator("#run-summary")).to_contain_text("prod")  # the profile
    expect(page.locator("#log-state")).to_contain_text("run completed")
    page.locator("#run-outputs").scroll_into_view_if_needed()
    screenshot(page, "run")

    hello = wait_run(dash.cli, "hello")
    page.goto(dash.url(f"/runs/{hello['run_id']}"))
    expect(page.locator("#run-outputs pre.json")).to_contain_text("hello from prod.config.toml")
    expect(page.locator("#log")).to_contain_text("greeting: hello from prod.config.toml")
    expect(page.locator("#log-state")).to_contain_text("run completed")

    page.goto(dash.url("/pipelines"))
    pipeline = page.locator("section.pipeline", has_text="numbers_pipeline")
    expect(pipeline.locator("table.schema")).to_contain_text("bigint")  # column n
    screenshot(page, "pipelines")

    page.goto(dash.url("/runs"))
    page.select_option("select[name=status]", "cancelled")
    expect(page.locator("#runs-table tbody tr")).to_have_count(1)
    expect(page.locator("#runs-table")).to_contain_text("napper")
    page.select_option("select[name=status]", "")
    screenshot(page, "runs")


NIGHTLY = '''

@run.job(trigger="0 3 * * *", expose={"tags": ["nightly"]})
def nightly():
    """Runs at 03:00 UTC."""
    print("nightly")
'''


def test_the_diff_between_two_deployments_and_pausing_a_schedule(dash: Dash, context: Any) -> None:
    code = dash.workspace_dir / "__deployment__.py"
    text = code.read_text().replace('"tiny_api"]', '"tiny_api", "nightly"]')
    code.write_text(text + NIGHTLY)
    config = dash.workspace_dir / ".dlt" / "config.toml"
    config.write_text(config.read_text() + 'farewell = "bye"\n')
    dash.cli.run("deploy", cwd=dash.workspace_dir)

    page = context.new_page()
    log_in(page, dash)
    page.click("nav >> text=Deployments")
    expect(page.locator("table.versions tbody tr")).to_have_count(2)
    page.click("button:has-text('Compare')")  # preselected: the previous and the current
    expect(page.locator("#plan")).to_contain_text("added jobs.__deployment__.nightly")
    expect(page.locator("#files")).to_contain_text("code/__deployment__.py")
    screenshot(page, "deployments")

    page.click("nav >> text=Configuration")
    expect(page.locator("main")).to_contain_text("config.toml: jobs.__deployment__.farewell")
    expect(page.locator("main")).not_to_contain_text("bye")  # key names, never values
    screenshot(page, "configuration")

    page.goto(dash.url("/jobs/jobs.__deployment__.nightly"))
    expect(page.locator("main")).to_contain_text("daily at 03:00")
    page.click("button:has-text('Pause schedule')")
    expect(page.locator(".banner.wait")).to_contain_text("Paused by admin")
    info = dash.server.api("GET", f"/api/v1/workspaces/{WORKSPACE}/jobs/nightly").json()
    assert info["paused_at"] is not None and info["next_runs"] == []
    screenshot(page, "job")
    page.click("button:has-text('Resume schedule')")
    expect(page.locator(".banner.wait")).to_have_count(0)
    info = dash.server.api("GET", f"/api/v1/workspaces/{WORKSPACE}/jobs/nightly").json()
    assert info["paused_at"] is None and len(info["next_runs"]) == 5


def test_the_overview_refreshes_itself(dash: Dash, context: Any) -> None:
    page = context.new_page()
    log_in(page, dash)
    page.evaluate("window.notReloaded = true")
    started = dash.server.api(
        "POST", f"/api/v1/workspaces/{WORKSPACE}/trigger", json={"selectors": ["fails"]}
    ).json()
    run_id = started["triggered"][0]["run_id"]
    failed = page.locator(f"#overview-live tr.failed a[href$='{run_id}']")
    expect(failed.first).to_be_visible(timeout=SLOW_MS)  # appears by itself (every 10 s)
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#overview-live .card.bad .n")).not_to_have_text("0")
    expect(page.locator("#overview-live")).to_contain_text(FAILS_REASON)
    screenshot(page, "overview")


FAILS_REASON = "RuntimeError: boom on purpose (__deployment__.py:26)"


def test_a_failed_run_shows_its_reason_and_the_end_of_its_traceback_above_the_log(
    dash: Dash, context: Any
) -> None:
    page = context.new_page()
    log_in(page, dash)
    page.goto(dash.url("/jobs/jobs.__deployment__.fails"))
    page.click("button:has-text('Run now')")
    expect(page.locator("#run-status")).to_have_text("failed", timeout=SLOW_MS)
    expect(page.locator("#run-reason")).to_have_text(FAILS_REASON)
    traceback = page.locator("#run-traceback")
    expect(traceback).to_contain_text('raise RuntimeError("boom on purpose")')
    expect(traceback).to_contain_text("RuntimeError: boom on purpose")
    expect(page.locator("#log")).to_contain_text(f"run failed: {FAILS_REASON}")
    failure_box, log_box = (
        page.locator("#run-failure").bounding_box(),
        page.locator("#log").bounding_box(),
    )
    assert failure_box is not None and log_box is not None
    assert failure_box["y"] + failure_box["height"] <= log_box["y"]  # above the log
    screenshot(page, "run-failed")

    page.goto(dash.url("/jobs/jobs.__deployment__.fails"))
    expect(page.locator("table.runs tr.failed").first).to_contain_text(FAILS_REASON)
    page.goto(dash.url("/jobs"))
    expect(page.locator("tr[data-job='jobs.__deployment__.fails'] .run-reason")).to_have_text(
        FAILS_REASON
    )


def test_a_token_is_shown_once_and_a_revoked_one_cannot_log_in(dash: Dash, context: Any) -> None:
    page = context.new_page()
    log_in(page, dash)
    page.click("nav >> text=Settings")
    expect(page.locator("#public-key")).to_contain_text("age1")
    page.fill("#create-token input[name=name]", "browser-read")
    page.click("#create-token button")
    token = page.locator("#new-token-value").inner_text().strip()
    assert token.startswith("dy_")
    screenshot(page, "settings")
    page.click("nav >> text=Settings")
    expect(page.locator("#new-token")).to_have_count(0)  # shown once
    row = page.locator("tr[data-token]", has_text="browser-read")
    expect(row).to_contain_text(token[:7])

    other = context.browser.new_context()
    reader = other.new_page()
    log_in(reader, dash, token)
    reader.goto(dash.url("/jobs/jobs.__deployment__.hello"))
    expect(reader.locator("main")).to_contain_text("needs a token with the deploy role")
    expect(reader.locator("button:has-text('Run now')")).to_have_count(0)
    csrf = reader.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    denied = reader.request.post(
        dash.url("/jobs/jobs.__deployment__.hello/run"), form={"csrf_token": csrf}
    )
    assert denied.status == 403  # the service's role check, shown as a one-line page
    assert "Not allowed" in denied.text() and "needs &#39;deploy&#39;" in denied.text()

    row.locator("button:has-text('Revoke')").click()
    expect(row).to_contain_text("revoked")
    reader.goto(dash.url())  # the revoked token's session ends at once
    expect(reader).to_have_url(re.compile(r"/ui/login"))
    reader.fill("#token", token)
    reader.click("form[action='/ui/login'] button")
    expect(reader.locator(".banner.bad")).to_contain_text("invalid or revoked token")
    other.close()


def test_a_post_without_the_csrf_token_is_refused(dash: Dash, context: Any) -> None:
    page = context.new_page()
    log_in(page, dash)
    page.goto(dash.url("/jobs/jobs.__deployment__.hello"))
    target = dash.url("/jobs/jobs.__deployment__.hello/run")
    for form in ({}, {"csrf_token": "forged"}):
        refused = page.request.post(target, form=form, max_redirects=0)
        assert refused.status == 403
        assert "CSRF" in refused.text()
    before = dash.server.api("GET", f"/api/v1/workspaces/{WORKSPACE}/runs?job=hello").json()
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    done = page.request.post(target, form={"csrf_token": token or ""}, max_redirects=0)
    assert done.status == 303  # the same post with the page's token is accepted
    after = dash.server.api("GET", f"/api/v1/workspaces/{WORKSPACE}/runs?job=hello").json()
    assert len(after) == len(before) + 1
    # the run it made ends here: the module's next launch of hello must not meet it (its
    # concurrency limit is 1, and a busy machine runs a job slower than the tests run)
    assert wait_run(dash.cli, "hello")["status"] == "completed"


def test_errors_are_one_line_pages(dash: Dash, context: Any) -> None:
    page = context.new_page()
    log_in(page, dash)
    response = page.goto(dash.url("/jobs/no_such_job"))
    assert response is not None and response.status == 404
    expect(page.locator("#error-message")).to_contain_text("no job 'no_such_job'")
    response = page.goto(f"{dash.server.url}/ui/w/elsewhere/runs")
    assert response is not None and response.status == 404
    expect(page.locator("#error-message")).to_contain_text("no workspace 'elsewhere'")
    response = page.goto(dash.url("/runs?after=garbage"))
    assert response is not None and response.status == 400
    assert "Traceback" not in page.content()


def test_logging_out_ends_the_session(dash: Dash, context: Any) -> None:
    page = context.new_page()
    log_in(page, dash)
    page.click("button:has-text('Log out')")
    expect(page).to_have_url(re.compile(r"/ui/login$"))
    page.goto(dash.url("/runs"))
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))


def test_the_settings_page_lists_the_audit_log_and_runs_say_who(dash: Dash, context: Any) -> None:
    page = context.new_page()
    log_in(page, dash)
    page.goto(dash.url("/jobs/jobs.__deployment__.hello"))
    page.click("button:has-text('Run now')")
    expect(page.locator("#run-status")).to_have_text("completed", timeout=SLOW_MS)
    admin = "admin (DOCKYARD_ADMIN_TOKEN) (token #1)"
    expect(page.locator("#run-triggered-by")).to_have_text(admin)
    expect(page.locator("#run-summary")).to_contain_text("manual")
    page.goto(dash.url("/runs?job=jobs.__deployment__.hello"))
    newest = page.locator("#runs-table tbody tr").first
    expect(newest.locator(".by")).to_have_text(f"by {admin}")
    expect(newest).to_contain_text("manual")
    for action in ("pause", "resume"):
        done = dash.server.api("POST", f"/api/v1/workspaces/{WORKSPACE}/jobs/hello/{action}")
        assert done.status_code == 200

    page.click("nav >> text=Settings")
    rows = page.locator("#audit tr[data-event]")
    expect(rows.first).to_have_attribute("data-action", "resume")  # newest first
    expect(rows.nth(1)).to_have_attribute("data-action", "pause")
    expect(rows.nth(0).locator(".actor")).to_have_text(admin)
    launch = page.locator("#audit tr[data-action=launch]").first
    expect(launch).to_contain_text("jobs.__deployment__.hello #")
    expect(page.locator("#audit tr[data-action=deploy]").last).to_contain_text(admin)
    page.locator("#audit").scroll_into_view_if_needed()
    screenshot(page, "audit")


def test_an_apps_page_makes_lists_and_revokes_its_public_links(dash: Dash, context: Any) -> None:
    page = context.new_page()
    log_in(page, dash)
    page.goto(dash.url("/jobs/jobs.__deployment__.tiny_api"))
    links = page.locator("#public-links tr[data-link]")
    expect(page.locator("#public-links")).to_contain_text("No public links.")

    page.fill("#create-link input[name=note]", "for the demo")
    page.click("#create-link button")

    url = page.locator("#new-link-url").inner_text().strip()
    origin = f"http://tiny-api--{WORKSPACE}.apps.localhost:{dash.server.port}/p/dyp_"
    assert url.startswith(origin)
    expect(links).to_have_count(1)
    expect(links).to_contain_text("for the demo")
    listed = dash.cli.json("app", "link", "list", "tiny_api")
    assert [(x["note"], x["active"]) for x in listed] == [("for the demo", True)]
    page.goto(dash.url("/jobs/jobs.__deployment__.tiny_api"))  # shown that once only
    expect(page.locator("#new-link-url")).to_have_count(0)
    assert url.split("/p/")[1].rstrip("/") not in page.content()

    links.locator("button:has-text('Revoke')").click()

    expect(links).to_contain_text("revoked")
    assert [x["active"] for x in dash.cli.json("app", "link", "list", "tiny_api")] == [False]
    assert httpx.get(url, timeout=10).status_code == 404
