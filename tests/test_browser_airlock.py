"""The airlock in a real browser (headless Debian Chromium through Playwright, the app under uvicorn):
a scientist asks for a job output to leave, two reviewers approve it on the review page, an owner
releases it, and the scientist downloads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.test_browser_datasets import log_in, no_csp_trouble, open_page

from airlock_helpers import SAFE_TABLE, job_output, make_airlock_world, quiet_runner

pytestmark = pytest.mark.browser

REVIEW_SCREENSHOT = Path("/tmp/sanctum-browser-airlock-review.png")


def test_request_two_reviews_release_download(chromium, runtime, request, people, tmp_path):
    from playwright.sync_api import expect

    quiet_runner(runtime)
    client = request.getfixturevalue("client")
    world = request.getfixturevalue("world")
    live = request.getfixturevalue("live_server")
    aw = make_airlock_world(runtime, client, world, people, tmp_path)
    dataset, version, _ = job_output(aw, {"tables/by_sex.csv": SAFE_TABLE})
    base = live.url
    exports = "/projects/alpha/exports"

    console: list[str] = []
    context, page = open_page(chromium, console)
    log_in(page, base, world.scientist, exports)
    page.get_by_label("Title").fill("Table 1")
    page.get_by_label("Justification").fill("Counts by sex and age band for the paper")
    page.get_by_role("button", name="Create export request").click()
    expect(page).to_have_url(base + f"{exports}/1?done=export_created")
    page.get_by_label("Output file").select_option(f"{dataset}@{version}:tables/by_sex.csv")
    page.get_by_role("button", name="Add and check").click()
    expect(page.get_by_role("status")).to_contain_text("File added and checked")
    expect(page.get_by_text("count cells in 'n' are all 0 or at least 10", exact=False)).to_be_visible()
    page.get_by_role("button", name="Submit for review").click()
    expect(page.get_by_role("status")).to_contain_text("Submitted")
    context.close()

    for reviewer in (world.checker, world.owner):
        context, page = open_page(chromium, console)
        log_in(page, base, reviewer, f"{exports}/1/review")
        expect(page.get_by_role("table", name="First 4 of 4 rows of tables/by_sex.csv")).to_be_visible()
        expect(page.get_by_role("heading", name="Lineage").first).to_be_visible()
        if reviewer is world.checker:
            page.screenshot(path=str(REVIEW_SCREENSHOT), full_page=True)
        page.get_by_label("Approve").check()
        page.get_by_label("Comment").fill("counts are safe")
        page.get_by_role("button", name="Record my review").click()
        expect(page.get_by_role("status")).to_contain_text("Your review is recorded")
        if reviewer is world.owner:
            page.goto(base + f"{exports}/1")
            expect(page.locator(".state").first).to_have_text("Approved")
            page.get_by_role("button", name="Release").click()
            expect(page.get_by_role("status")).to_contain_text("Released")
        context.close()

    context, page = open_page(chromium, console)
    log_in(page, base, world.scientist, f"{exports}/1")
    expect(page.get_by_text("checker@example.org", exact=True)).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download tables/by_sex.csv").click()
    saved = tmp_path / "downloaded.csv"
    download.value.save_as(saved)
    assert saved.read_bytes() == SAFE_TABLE
    no_csp_trouble(console)
    context.close()
