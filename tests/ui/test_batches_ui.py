"""The batch page in a real browser against a server that works the queue: a batch file
pasted in, a bad one refused with its problems listed, the jobs' progress and the report."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.servers import BATCH, Server

pytestmark = pytest.mark.slow


@pytest.mark.slow(seconds=15)
def test_a_batch_is_submitted_followed_and_reported(page: Page, batch_server: Server) -> None:
    page.goto(batch_server.url + "/batches.html")
    page.fill("#token-input", batch_server.tokens["alice2"])
    page.press("#token-input", "Enter")
    expect(page.locator("#token-state")).to_have_text("connected")
    page.fill("#batch-toml", '[[function]]\ntarget = "/etc/hosts::f"\nllm = "local"\n')
    page.click("#submit-form button[type=submit]")
    errors = page.locator("#submit-errors li")
    expect(errors).to_have_count(2)
    expect(errors.nth(0)).to_contain_text("the server runs its own model")
    expect(errors.nth(1)).to_contain_text("must be a path relative")
    page.fill("#batch-toml", BATCH)
    page.click("#submit-form button[type=submit]")
    expect(page.locator("#batch-title")).to_contain_text("api-night")
    row = page.locator("#jobs tbody tr")
    expect(row).to_have_count(1)
    # the page follows the batch until it ends: the job done, its verified speedup shown
    expect(page.locator("#batch-status")).to_have_text("ended", timeout=240_000)
    expect(row.nth(0)).to_have_attribute("data-status", "done")
    expect(row.nth(0).locator("td").nth(3)).to_contain_text("x [")
    expect(page.locator("#batch-bar")).to_have_attribute("data-ended", "1")
    report = page.frame_locator("#report")
    expect(report.locator("h1")).to_contain_text("Batch api-night")
    expect(report.locator("svg")).to_have_count(2)
    expect(page.locator("#batch-list button[aria-current=true]")).to_contain_text("1/1 jobs")
