"""Alerts through the real server, CLI and runs, to real receivers on loopback: a signed
webhook (the signature checked here with the secret, as docs/alerts.md tells a receiver to),
Slack's format, e-mail through an SMTP server (aiosmtpd) with a login; retries with backoff
recorded; recovered-after-failure once; nothing for a plain success; secrets nowhere in clear."""

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import dbread
from tests.alerting import Mailbox, Receiver, http_receiver, smtp_server, wait_for
from tests.conftest import WORKSPACES, Cli, copy_workspace, free_port, make_server, wait_run

WS = "alerts"
SECRET = "hook-secret-0123456789abcdef"
PASSWORD = "smtp-Pa55word-for-alerts"
SLACK_PATH = "/slack/T0001/B0001/slackCredentialXyz987"


@dataclass
class Yard:
    cli: Cli
    receiver: Receiver
    mailbox: Mailbox
    generated: str  # the secret the server made for the `retried` webhook


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory, cache_home: Path) -> Iterator[Yard]:
    tmp = tmp_path_factory.mktemp("alerts")
    with http_receiver() as receiver, smtp_server(("alerts", PASSWORD)) as mailbox:
        server = make_server(
            tmp, DOCKYARD_ALERT_BACKOFF="0.2,0.4", DOCKYARD_ALERT_MAX_ATTEMPTS="4"
        ).start()
        cli = Cli(server, cache_home, tmp / "config", WS)
        try:
            cli.run("workspace", "create", WS)
            cli.run("deploy", cwd=copy_workspace(WORKSPACES / "alerting", tmp / "ws"), timeout=600)
            generated = add_channels(cli, receiver, mailbox)
            yield Yard(cli, receiver, mailbox, generated)
        finally:
            server.stop()


def add_channels(cli: Cli, receiver: Receiver, mailbox: Mailbox) -> str:
    env = {"HOOK_SECRET": SECRET, "SLACK_URL": receiver.url + SLACK_PATH, "SMTP_PW": PASSWORD}
    cli.run("alert", "add-webhook", "hook", "--url", f"{receiver.url}/hook",
            "--secret-env", "HOOK_SECRET", env=env)  # fmt: skip
    cli.run("alert", "add-slack", "team", "--url-env", "SLACK_URL", env=env)
    cli.run("alert", "add-email", "mail", "--host", "127.0.0.1", "--port", str(mailbox.port),
            "--security", "none", "--username", "alerts", "--password-env", "SMTP_PW",
            "--from", "dockyard@example.test", "--to", "oncall@example.test",
            "--to", "lead@example.test", env=env)  # fmt: skip
    receiver.script["/retried"] = [500, 500]  # the third attempt gets through
    made = cli.json("alert", "add-webhook", "retried", "--url", f"{receiver.url}/retried",
                    "--event", "failed")  # fmt: skip
    return str(made["webhook_secret"])


def launch(cli: Cli, job: str) -> dict[str, Any]:
    started = cli.json("launch", job)
    return wait_run(cli, job, started["number"])


def deliveries_of(cli: Cli, run_id: str) -> list[dict[str, Any]]:
    return [d for d in cli.json("alert", "deliveries", "--limit", "200") if d["run_id"] == run_id]


def posted_for(receiver: Receiver, path: str, run_id: str) -> list[Any]:
    return [p for p in receiver.at(path) if p.json().get("run_id") == run_id]


def test_a_failed_run_is_told_to_every_channel(yard: Yard) -> None:
    cli = yard.cli
    run = launch(cli, "broken")
    assert run["status"] == "failed"
    link = f"{cli.server.url}/ui/w/{WS}/runs/{run['run_id']}"

    hook = wait_for("the webhook", lambda: posted_for(yard.receiver, "/hook", run["run_id"]))[0]
    stamp, signature = (
        hook.headers["x-dockyard-timestamp"],
        hook.headers["x-dockyard-signature-256"],
    )
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + hook.body, hashlib.sha256)
    assert hmac.compare_digest(signature, "sha256=" + expected.hexdigest())
    body = hook.json()
    assert (body["event"], body["workspace"], body["status"]) == ("failed", WS, "failed")
    assert body["job"] == run["job_ref"] and body["run_number"] == run["number"]
    assert body["reason"] == run["reason"] and body["reason"]
    assert body["url"] == link

    slack = wait_for("the Slack message", lambda: yard.receiver.at(SLACK_PATH))[0].json()
    assert set(slack) == {"text", "blocks"}
    assert run["reason"] in slack["text"] and link in slack["text"]
    assert slack["blocks"][0]["type"] == "section"
    assert link in slack["blocks"][0]["text"]["text"]

    mail, recipients = wait_for("the e-mail", lambda: yard.mailbox.messages)[0]
    assert "broken" in mail["Subject"] and "failed" in mail["Subject"]
    assert sorted(recipients) == ["lead@example.test", "oncall@example.test"]
    text = mail.get_content()
    assert run["reason"] in text and link in text
    assert yard.mailbox.logins == ["alerts"]


def test_a_receiver_failing_twice_gets_the_alert_on_the_third_attempt(yard: Yard) -> None:
    run_id = wait_for("the first failed run", lambda: _first_failed(yard.cli))

    def three() -> list[Any]:
        found = posted_for(yard.receiver, "/retried", run_id)
        return found if len(found) >= 3 else []

    def recorded() -> list[dict[str, Any]]:
        rows = deliveries_of(yard.cli, run_id)
        return [d for d in rows if d["channel"] == "retried" and d["status"] == "sent"]

    posts = wait_for("three attempts", three)
    assert [p.status for p in posts] == [500, 500, 200]
    record = wait_for("the record of the third attempt", recorded)[0]
    assert record["attempts"] == 3 and record["sent_at"]
    assert record["last_error"].startswith("HTTP 500")
    body = posts[-1].body
    stamp = posts[-1].headers["x-dockyard-timestamp"]
    mac = hmac.new(yard.generated.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    assert posts[-1].headers["x-dockyard-signature-256"] == "sha256=" + mac.hexdigest()


def _first_failed(cli: Cli) -> str | None:
    runs = [r for r in cli.json("job-run", "list") if r["status"] == "failed"]
    return min(runs, key=lambda r: r["created_at"])["run_id"] if runs else None


def test_a_timed_out_run_is_told_as_timeout(yard: Yard) -> None:
    run = launch(yard.cli, "slow")
    assert (run["status"], run["reason"]) == ("failed", "timeout")

    rows = deliveries_of(yard.cli, run["run_id"])
    # written with the run's end; `retried` wants only `failed`
    assert sorted((d["channel"], d["event"]) for d in rows) == [
        ("hook", "timeout"), ("mail", "timeout"), ("team", "timeout"),
    ]  # fmt: skip
    body = wait_for("the webhook", lambda: posted_for(yard.receiver, "/hook", run["run_id"]))
    assert body[0].json()["event"] == "timeout"


def test_recovered_after_failure_is_told_once_and_a_plain_success_never(yard: Yard) -> None:
    cli = yard.cli
    fine = launch(cli, "fine")
    assert fine["status"] == "completed"
    assert deliveries_of(cli, fine["run_id"]) == []  # the outbox is written with the end

    assert launch(cli, "flaky")["status"] == "failed"
    recovered = launch(cli, "flaky")
    assert recovered["status"] == "completed"
    rows = deliveries_of(cli, recovered["run_id"])
    assert sorted((d["channel"], d["event"]) for d in rows) == [
        ("hook", "recovered"), ("mail", "recovered"), ("team", "recovered"),
    ]  # fmt: skip
    hook = wait_for("the webhook", lambda: posted_for(yard.receiver, "/hook", recovered["run_id"]))
    assert hook[0].json()["event"] == "recovered"

    again = launch(cli, "flaky")
    assert again["status"] == "completed"
    assert deliveries_of(cli, again["run_id"]) == []


def test_alert_test_reports_what_happened(yard: Yard) -> None:
    cli = yard.cli
    sent = cli.json("alert", "test", "hook")
    assert (sent["status"], sent["attempts"], sent["event"]) == ("sent", 1, "test")
    tests = [p for p in yard.receiver.at("/hook") if p.json()["event"] == "test"]
    assert tests and tests[-1].json()["delivery_id"] == sent["id"]

    cli.run("alert", "add-webhook", "nowhere", "--url", f"http://127.0.0.1:{free_port()}/x")
    error = cli.fails("alert", "test", "nowhere")
    assert "not sent through 'nowhere'" in error and "ConnectError" in error
    cli.run("alert", "remove", "nowhere")
    assert "nowhere" not in {c["name"] for c in cli.json("alert", "list")}


def test_bad_channels_are_refused_with_one_line(yard: Yard) -> None:
    cli = yard.cli
    assert "is not an http or https URL" in cli.fails(
        "alert", "add-webhook", "ftp", "--url", "ftp://example.com/x"
    )
    assert "already has an alert channel 'hook'" in cli.fails(
        "alert", "add-webhook", "hook", "--url", "https://example.com/x"
    )
    assert "is empty" in cli.fails("alert", "add-slack", "s", "--url-env", "UNSET_VAR_FOR_TEST")
    assert "is not an https URL" in cli.fails(
        "alert", "add-slack", "s", "--url-env", "U", env={"U": "http://hooks.slack.com/x"}
    )


def test_an_alert_committed_before_a_crash_is_sent_after_the_restart(
    tmp_path: Path, cache_home: Path
) -> None:
    with http_receiver() as receiver:
        server = make_server(tmp_path, DOCKYARD_CRASH_AT="alert_unsent").start()
        cli = Cli(server, cache_home, tmp_path / "config", "crashing")
        try:
            cli.run("workspace", "create", "crashing")
            cli.run("deploy", cwd=copy_workspace(WORKSPACES / "alerting", tmp_path / "ws"))
            cli.run("alert", "add-webhook", "hook", "--url", f"{receiver.url}/crash")
            cli.json("launch", "broken")
            assert server.proc is not None
            server.proc.wait(timeout=300)  # it kills itself once the alert is due
            assert server.proc.returncode == -9, server.log.read_text()[-3000:]
            server.proc = None
            assert receiver.at("/crash") == []

            server.extra_env.pop("DOCKYARD_CRASH_AT")
            server.start()
            run = wait_run(cli, "broken", 1)
            posted = wait_for("the alert", lambda: receiver.at("/crash"))
            assert [p.json()["run_id"] for p in posted] == [run["run_id"]]
            assert run["status"] == "failed"
        finally:
            server.stop()


def test_secrets_are_never_in_clear(yard: Yard) -> None:
    cli = yard.cli
    secrets = [SECRET, PASSWORD, SLACK_PATH.rsplit("/", 1)[1], yard.generated]
    listed = cli.run("alert", "list", "-o", "json").stdout
    channels = {c["name"]: c for c in json.loads(listed)}
    assert channels["hook"]["secret"] == SECRET[:6] + "…"
    assert channels["team"]["secret"] == channels["mail"]["secret"] == "set"
    answers = [
        listed,
        cli.run("alert", "list").stdout,
        cli.server.api("GET", f"/api/v1/workspaces/{WS}/alerts").text,
        cli.server.api("GET", f"/api/v1/workspaces/{WS}/alert-deliveries").text,
        cli.server.api("GET", f"/ui/w/{WS}/settings").text,
    ]
    data = cli.server.data_dir
    stored = [p.read_bytes() for p in data.glob("dockyard.db*")]
    stored.append(dbread.dump(dbread.url_of(cli.server)).encode())
    log = cli.server.log.read_bytes()
    for secret in secrets:
        assert all(secret not in text for text in answers), secret
        assert all(secret.encode() not in blob for blob in stored), secret
        assert secret.encode() not in log, secret
