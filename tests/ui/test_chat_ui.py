"""The chat UI in a real browser (Debian's chromium, driven by Playwright) against the real
server: send a request, watch the DAG fill in and the diff arrive, follow up, reload and
see the run replayed. A screenshot is saved as a test artifact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.servers import Server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PERFSMITH_TEST_ARTIFACTS", ROOT / "test-artifacts"))
MESSAGE = "make dupes/dupes.py::find_duplicates faster, with inputs dupes/inputs.py::generate"


def nodes_done(page: Page, at_least: int, round_: int = 1) -> None:
    page.wait_for_function(
        "([n, r]) => document.querySelectorAll("
        "`#dag .node[data-status=done][data-task^='${r}.']`).length >= n",
        arg=[at_least, round_],
        timeout=240_000,
    )


@pytest.mark.slow(seconds=30)
def test_a_request_fills_the_dag_shows_the_diff_follows_up_and_replays(
    page: Page, optimize_server: Server
) -> None:
    page.goto(optimize_server.url + "/")
    expect(page.locator("#token-state")).to_contain_text("API token")
    page.fill("#token-input", optimize_server.tokens["alice"])
    page.press("#token-input", "Enter")
    expect(page.locator("#token-state")).to_have_text("connected")

    page.click("h1")  # away from the composer; "/" brings the keyboard back to it
    expect(page.locator("#prompt")).not_to_be_focused()
    page.keyboard.press("/")
    expect(page.locator("#prompt")).to_be_focused()
    page.keyboard.type(MESSAGE)
    page.keyboard.press("Enter")

    expect(page.locator("#messages .msg.user").first).to_have_text(MESSAGE)
    nodes_done(page, 5)  # profile, 2 proposals, 2 verifications
    expect(page.locator("#messages .msg.answer")).to_contain_text("the set-based rewrite wins")
    expect(page.locator("#run-status")).to_have_text("done")
    expect(page.locator("#diff")).to_have_attribute("data-ready", "true")
    expect(page.locator("#diff .add").first).to_be_visible()
    expect(page.locator("#diff")).to_contain_text("set()")
    expect(page.locator("#diff .kw").first).to_be_visible()  # highlighted
    expect(page.locator("#candidates [data-verdict=faster]")).to_have_count(1)
    expect(page.locator("#candidates [data-verdict=slower]")).to_have_count(1)
    expect(page.locator("#artifacts [data-kind=report-html]")).to_have_count(1)
    run_id = page.evaluate("location.hash").removeprefix("#run=")
    assert len(run_id) == 32
    expect(page.locator(f"#run-list [data-run-id='{run_id}']")).to_have_count(1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-run.png"), full_page=True)

    # a follow-up continues the same run: a second round, a third candidate
    page.fill("#prompt", "also try counting with a dict")
    page.press("#prompt", "Enter")
    nodes_done(page, 2, round_=2)
    expect(page.locator("#candidates [data-verdict]")).to_have_count(3)
    expect(page.locator("#messages .msg.answer").last).to_contain_text(
        "the counting rewrite is verified too"
    )
    expect(page.locator("#messages .msg.user")).to_have_count(2)

    # reload: the run is reopened and its events replayed
    page.reload()
    nodes_done(page, 5)
    nodes_done(page, 2, round_=2)
    expect(page.locator("#messages .msg.answer")).to_have_count(2)
    expect(page.locator("#messages .msg.user")).to_have_count(2)
    expect(page.locator("#diff")).to_have_attribute("data-ready", "true")
    page.screenshot(path=str(ARTIFACTS / "ui-replayed.png"), full_page=True)

    # a new chat clears the view; the list reopens the run
    page.keyboard.press("Alt+n")
    expect(page.locator("#dag .node")).to_have_count(0)
    page.click(f"#run-list [data-run-id='{run_id}']")
    nodes_done(page, 5)


def test_a_bad_token_and_a_bad_request_are_reported(page: Page, optimize_server: Server) -> None:
    page.goto(optimize_server.url + "/")
    page.fill("#token-input", "psk_wrong")
    page.press("#token-input", "Enter")
    expect(page.locator("#token-state")).to_contain_text("token refused")
    page.fill("#token-input", optimize_server.tokens["bob"])
    page.press("#token-input", "Enter")
    expect(page.locator("#token-state")).to_have_text("connected")
    page.fill("#prompt", "hello there")
    page.press("#prompt", "Enter")
    expect(page.locator("#messages .msg.error")).to_contain_text("cannot tell what to optimize")


@pytest.mark.slow(seconds=20)
def test_the_message_and_a_pending_run_show_before_the_server_answers(
    page: Page, optimize_server: Server
) -> None:
    """Send echoes the message and lists a pending run at once: the request to create
    the run is held here until both are on screen."""
    from playwright.sync_api import Route

    page.goto(optimize_server.url + "/")
    page.fill("#token-input", optimize_server.tokens["alice"])
    page.press("#token-input", "Enter")
    expect(page.locator("#token-state")).to_have_text("connected")
    held: list[Route] = []

    def hold(route: Route) -> None:
        if route.request.method == "POST":
            held.append(route)  # answered below, once the page has shown what it must
        else:
            route.continue_()

    page.route("**/runs", hold)
    page.fill("#prompt", MESSAGE)
    page.press("#prompt", "Enter")
    expect(page.locator("#messages .msg.user").first).to_have_text(MESSAGE)
    expect(page.locator("#messages .msg.pending")).to_contain_text("Starting the run")
    expect(page.locator("#run-list [data-pending=true]")).to_contain_text("pending")
    page.wait_for_function("() => true")  # let the held request's handler run
    assert len(held) == 1
    held[0].continue_()
    page.unroute("**/runs")
    expect(page.locator("#run-status")).to_have_text("done", timeout=240_000)
    expect(page.locator("#run-list [data-pending=true]")).to_have_count(0)
