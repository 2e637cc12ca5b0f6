"""The Settings page's alert section in a real Chromium: add a webhook (its generated secret
shown once), send a test to a real loopback receiver, see the delivery, remove the channel."""

import re
from typing import Any

from playwright.sync_api import expect

from tests.alerting import http_receiver
from tests.browser.conftest import Dash, log_in


def test_alert_channels_are_added_tested_and_removed_from_settings(
    dash: Dash, context: Any
) -> None:
    with http_receiver() as receiver:
        page = context.new_page()
        log_in(page, dash)
        page.click("nav >> text=Settings")
        expect(page.locator("#alerts")).to_contain_text("No alert channels yet.")

        page.click("#alerts summary:has-text('Add a webhook')")
        form = page.locator("#add-webhook")
        form.locator("input[name=name]").fill("browser-hook")
        form.locator("input[name=url]").fill(f"{receiver.url}/browser")
        form.locator("input[name=event_timeout]").uncheck()
        form.locator("button").click()
        secret = page.locator("#alert-secret").inner_text().strip()
        assert re.fullmatch(r"[0-9a-f]{64}", secret)
        row = page.locator("tr[data-channel='browser-hook']")
        expect(row).to_contain_text("failed, lost, recovered")
        expect(row).to_contain_text(secret[:6] + "…")

        row.locator("button:has-text('Send test')").click()
        expect(page.locator("#alert-test")).to_contain_text("Test alert sent through browser-hook")
        expect(page.locator("#alert-secret")).to_have_count(0)  # shown once
        assert [p.json()["event"] for p in receiver.at("/browser")] == ["test"]
        expect(page.locator("table.alert-deliveries tr[data-delivery]").first).to_contain_text(
            "sent"
        )

        page.locator("tr[data-channel='browser-hook'] button:has-text('Remove')").click()
        expect(page.locator("tr[data-channel]")).to_have_count(0)
        expect(page.locator("table.alert-deliveries")).to_contain_text("browser-hook")
