"""The airlock in a real browser (headless Debian Chromium through Playwright, the app under uvicorn):
a scientist asks for a job output to leave, two reviewers approve it on the review page, an owner
releases it, and the scientist downloads it; a scientist asks for a file to come in with the import
form, and an owner approves it."""

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


def test_request_an_import_through_the_form_and_approve_it(
    chromium, live_server, world, monkeypatch, tmp_path
):
    """The form with a real file chooser: a file over the limit comes back refused on the page with
    the typed reason kept (Chromium shows the answer although the server did not read the body),
    then a good file is held until the owner approves it on the same page."""
    from playwright.sync_api import expect

    from sanctum.airlock.rules import ImportRules

    monkeypatch.setattr(
        "sanctum.web.pages_imports.import_rules", lambda *_: ImportRules(max_bytes=1024 * 1024)
    )
    big, codes = tmp_path / "big.bin", tmp_path / "icd10.csv"
    big.write_bytes(b"x" * (8 * 1024 * 1024))
    codes.write_bytes(b"code,label\nI21,acute myocardial infarction\n")
    base, imports = live_server.url, "/projects/alpha/imports"
    console: list[str] = []
    context, page = open_page(chromium, console)
    log_in(page, base, world.scientist, imports)
    page.get_by_label("Dataset it lands in").fill("reference")
    page.get_by_label("Justification").fill("ICD-10 labels for the figures")
    page.get_by_label("File", exact=True).set_input_files(str(big))
    page.get_by_role("button", name="Request import").click()
    expect(page.get_by_role("alert")).to_have_text("The file is larger than the import limit of 1.0 MiB.")
    expect(page.get_by_label("Justification")).to_have_value("ICD-10 labels for the figures")
    assert [m for m in console if "status of 413" not in m] == [] and console  # the refusal, nothing else
    console.clear()
    page.get_by_label("File", exact=True).set_input_files(str(codes))
    page.get_by_role("button", name="Request import").click()
    expect(page).to_have_url(base + f"{imports}?done=import_requested")
    expect(page.get_by_role("status")).to_contain_text("Import requested")
    expect(page.locator(".state").first).to_have_text("Pending")
    no_csp_trouble(console)
    context.close()

    context, page = open_page(chromium, console)
    log_in(page, base, world.owner, imports)
    page.get_by_role("button", name="Approve import 1").click()
    expect(page.get_by_role("status")).to_contain_text("Approved")
    expect(page.get_by_role("link", name="version 1")).to_be_visible()
    no_csp_trouble(console)
    context.close()
