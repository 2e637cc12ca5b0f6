"""Alerts' pure parts: which end makes which alert, the channels' checks, what each kind of
message says and how a webhook is signed, the retry delays."""

import hashlib
import hmac
import json

import pytest

from dockyard.controller.alerts import delivery, kinds, messages, senders
from dockyard.errors import InvalidInput

FACTS = messages.facts(
    "failed",
    "weather",
    "jobs.load",
    {
        "id": "r-1",
        "number": 12,
        "status": "failed",
        "reason": "ModuleNotFoundError: No module named 'ibis' (usgs/x.py:13)",
        "trigger": "schedule:*/5 * * * *",
        "finished_at": "2026-01-01T00:00:00+00:00",
    },
)
URL = "https://dockyard.example/ui/w/weather/runs/r-1"


@pytest.mark.parametrize(
    ("status", "stop_reason", "lost", "previous", "event"),
    [
        ("failed", None, False, None, "failed"),
        ("failed", "timeout", False, None, "timeout"),
        ("failed", None, True, None, "lost"),
        ("failed", "timeout", True, None, "lost"),
        ("completed", None, False, "failed", "recovered"),
        ("completed", None, False, "completed", None),
        ("completed", None, False, None, None),
        ("cancelled", "cancel", False, "failed", None),
        ("skipped", None, False, "failed", None),
    ],
)
def test_event_for(
    status: str, stop_reason: str | None, lost: bool, previous: str | None, event: str | None
) -> None:
    assert kinds.event_for(status, stop_reason, lost, previous) == event


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        (None, False),
        ("out of memory", False),
        ("lost: the run's container is gone (removed, or the docker engine lost it)", True),
        ("lost: the run's supervisor ended without a status", True),
        ("the docker engine stopped or restarted during the run (the container got SIGTERM)", True),
        ("the run's exit record /x/exit.json is unreadable (bad); how it ended is unknown", True),
    ],
)
def test_lost_exit(error: str | None, lost: bool) -> None:
    assert kinds.lost_exit(error) is lost


def test_events_default_to_all_and_are_checked() -> None:
    assert kinds.check_events(None) == list(kinds.EVENTS)
    assert kinds.check_events(["recovered", "failed"]) == ["failed", "recovered"]
    with pytest.raises(InvalidInput, match="unknown alert event 'crashed'"):
        kinds.check_events(["crashed"])


@pytest.mark.parametrize("name", ["", "Ops", "a b", "x" * 65, "-lead"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="alert channel name"):
        kinds.check_name(name)


def test_urls() -> None:
    assert kinds.check_url(" http://10.0.0.5:8080/hook ", "--url") == "http://10.0.0.5:8080/hook"
    with pytest.raises(InvalidInput, match="not an http or https URL"):
        kinds.check_url("file:///etc/passwd", "--url")
    with pytest.raises(InvalidInput, match="not an https URL"):
        kinds.check_url("http://hooks.slack.com/services/x", "the Slack URL", https_only=True)
    assert kinds.check_url("http://127.0.0.1:9/s", "the Slack URL", https_only=True)
    with pytest.raises(InvalidInput, match="spaces or control"):
        kinds.check_url("https://a.example/x\r\nHost: b", "--url")


def test_smtp_fields() -> None:
    checked = kinds.check_smtp(
        {"host": "smtp.example.com", "sender": "d@example.com", "to": "a@x.io, b@x.io"}
    )
    assert checked == {
        "host": "smtp.example.com",
        "port": 587,
        "security": "starttls",
        "username": None,
        "sender": "d@example.com",
        "to": ["a@x.io", "b@x.io"],
    }
    assert kinds.check_smtp({**checked, "port": None, "security": "ssl"})["port"] == 465
    cases: list[tuple[dict[str, object], str]] = [
        ({"to": ["a@x.io\r\nBcc: evil@x.io"]}, "is not an e-mail address"),
        ({"to": []}, "give 1 to 20"),
        ({"port": 70000}, "not a port number"),
        ({"security": "tls"}, "choose from starttls, ssl, none"),
        ({"host": "smtp example"}, "not a host name"),
    ]
    for bad, match in cases:
        with pytest.raises(InvalidInput, match=match):
            kinds.check_smtp({**checked, **bad})


def test_hints_never_hold_a_secret() -> None:
    assert kinds.hint("webhook", "0123456789abcdef0123") == "012345…"
    assert kinds.hint("slack", "https://hooks.slack.com/services/T/B/secret") == "set"
    assert kinds.hint("email", None) is None


def test_webhook_signature_covers_the_timestamp_and_the_body() -> None:
    body = messages.webhook_body(FACTS, 7, URL)
    header = messages.signature("k" * 32, 1700000000, body)
    mac = hmac.new(b"k" * 32, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"sha256={mac}"
    assert messages.verify("k" * 32, "1700000000", body, header)
    assert not messages.verify("k" * 32, "1700000001", body, header)  # replayed, restamped
    assert not messages.verify("k" * 32, "1700000000", body + b" ", header)
    assert not messages.verify("k" * 32, "soon", body, header)
    data = json.loads(body)
    assert data["reason"] == FACTS["reason"] and data["url"] == URL and data["delivery_id"] == 7
    assert data["summary"] == "weather/jobs.load run #12 failed"


def test_a_long_reason_is_clipped() -> None:
    long = messages.facts("failed", "w", "j", {"reason": "x" * 10_000, "number": 1, "id": "r"})
    assert len(long["reason"]) == messages.MAX_REASON and long["reason"].endswith("…")
    assert len(messages.webhook_body(long, 1, URL)) < messages.MAX_BODY


def test_slack_message_escapes_what_slack_would_read_as_markup() -> None:
    facts = {**FACTS, "reason": "<!channel> & <https://evil.example|click>"}
    slack = json.loads(messages.slack_body(facts, URL))
    assert set(slack) == {"text", "blocks"}
    section = slack["blocks"][0]["text"]["text"]
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in section
    assert f"<{URL}|Open the run>" in section


def test_email_subject_is_one_line_and_body_has_reason_and_link() -> None:
    facts = {**FACTS, "reason": "line one\r\nBcc: evil@example.com"}
    mail = messages.email(facts, URL, "d@example.com", ["a@example.com"])
    assert "\n" not in str(mail["Subject"]) and "Bcc" not in mail
    assert str(mail["Subject"]).startswith("[dockyard] weather/jobs.load run #12 failed: line one")
    text = mail.get_content()
    assert "Bcc: evil@example.com" in text and URL in text


def test_errors_are_one_line_without_secrets() -> None:
    line = senders.one_line("ConnectError:\n https://hooks.slack.com/T/B/sec \x1b[31m", ("sec",))
    assert line == "ConnectError: https://hooks.slack.com/T/B/*** ?[31m"
    assert len(senders.one_line("x" * 5000)) == senders.MAX_ERROR


def test_backoff_delays() -> None:
    policy = delivery.Policy((30.0, 120.0, 600.0), 6, 10.0, "")
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [30.0, 120.0, 600.0, 600.0, 600.0]
    assert delivery.Policy((), 3, 10.0, "").delay(1) == 0.0


def test_the_largest_alerts_stay_under_the_body_bound() -> None:
    wide = messages.facts(
        "failed", "w" * 64, "j" * 255, {"reason": "\U0001f4a5" * 10_000, "number": 1, "id": "r"}
    )
    wide["trigger"] = "t" * 255
    assert len(messages.webhook_body(wide, 1, URL)) <= messages.MAX_BODY
    assert len(messages.slack_body(wide, URL)) <= messages.MAX_BODY
