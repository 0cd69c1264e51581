"""The dataset pages in a real browser (headless Debian Chromium through Playwright, the app under
uvicorn): an owner creates a table dataset and queries it, a scientist finds no download control."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

QUERY_SCREENSHOT = Path("/tmp/sanctum-browser-query.png")
SCIENTIST_SCREENSHOT = Path("/tmp/sanctum-browser-dataset-scientist.png")
CSV = b"id,age,site\n1,34,north\n2,51,south\n3,29,north\n4,62,east\n"




def open_page(chromium, console: list[str]):
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    return context, page


def log_in(page, base: str, person, next_path: str) -> None:
    """The login form (and the TOTP step when the person has one), landing on ``next_path``."""
    from playwright.sync_api import expect

    page.goto(base + next_path)
    expect(page).to_have_url(re.compile(r"/login\?"))
    page.get_by_label("E-mail address").fill(person.email)
    page.get_by_label("Password").fill(person.password)
    page.get_by_role("button", name="Continue").click()
    if person.totp_secret:
        expect(page).to_have_url(re.compile(r"/login/totp"))
        page.get_by_label("Code", exact=True).fill(person.code())
        page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(base + next_path)


def upload_version(client, h, dataset: str) -> None:
    """What the CLI or SDK does: a draft, one streamed file, the commit."""
    base = f"/api/v1/projects/alpha/datasets/{dataset}/versions"
    assert client.post(base, headers=h).status_code == 201
    assert client.put(f"{base}/1/files/visits.csv", content=CSV, headers=h).status_code == 201
    assert client.post(f"{base}/1/commit", headers=h).status_code == 200


def no_csp_trouble(console: list[str]) -> None:
    csp = [m for m in console if "Content Security Policy" in m or "Content-Security-Policy" in m]
    assert csp == [], csp
    assert [m for m in console if m.startswith(("error", "pageerror"))] == [], console


def test_owner_creates_and_queries_a_table_scientist_cannot_download(
    chromium, live_server, client, world
) -> None:
    from playwright.sync_api import expect

    base = live_server.url
    console: list[str] = []

    # The owner logs in with the second factor and goes from the project to its datasets.
    context, page = open_page(chromium, console)
    log_in(page, base, world.owner, "/projects/alpha")
    page.get_by_role("navigation", name="Data of alpha").get_by_role("link", name="Datasets").click()
    expect(page).to_have_url(base + "/projects/alpha/datasets")
    expect(page.get_by_role("heading", name="Datasets", exact=True)).to_be_visible()
    expect(page.get_by_text("This project has no datasets yet")).to_be_visible()

    # A table dataset through the form.
    page.get_by_label("Name", exact=True).fill("visits")
    page.get_by_label("Kind").select_option("table")
    page.get_by_label("Description").fill("Outpatient visits, 2024")
    page.get_by_role("button", name="Create dataset").click()
    expect(page).to_have_url(re.compile(r"/projects/alpha/datasets/visits\?done=dataset_created$"))
    expect(page.get_by_role("status")).to_contain_text("Dataset created")
    expect(page.get_by_text("No committed versions yet")).to_be_visible()

    # Its data arrives through the REST API, as from the CLI; the page shows the version.
    upload_version(client, world.h["owner"], "visits")
    page.reload()
    expect(page.get_by_role("row").filter(has_text="v1")).to_contain_text("4")
    expect(page.get_by_role("link", name="Download table.parquet")).to_be_visible()
    expect(page.get_by_role("heading", name="Table schema")).to_be_visible()

    # The query page: the table is listed, a query runs, the result is a table.
    page.get_by_role("navigation", name="Data of alpha").get_by_role("link", name="Query").click()
    expect(page).to_have_url(base + "/projects/alpha/query")
    expect(page.locator("summary").filter(has_text="visits")).to_be_visible()
    page.get_by_label("SQL statement").fill(
        "SELECT site, count(*) AS visits, avg(age) AS mean_age FROM visits GROUP BY site ORDER BY site"
    )
    page.get_by_role("button", name="Run query").click()
    expect(page).to_have_url(base + "/projects/alpha/query")
    result = page.get_by_role("table", name="Query result")
    expect(result.get_by_role("columnheader")).to_have_text(
        [
            re.compile(r"^site\s+VARCHAR$"),
            re.compile(r"^visits\s+BIGINT$"),
            re.compile(r"^mean_age\s+DOUBLE$"),
        ]
    )
    expect(result.get_by_role("row")).to_have_count(4)  # header and three sites
    expect(result.get_by_role("row").filter(has_text="north")).to_contain_text("31.5")
    expect(page.get_by_role("status")).to_contain_text("3 rows, 3 columns")
    page.screenshot(path=str(QUERY_SCREENSHOT), full_page=True)
    no_csp_trouble(console)
    context.close()

    # A scientist sees the same dataset, its hashes and the query link, but nothing to download.
    context, page = open_page(chromium, console)
    log_in(page, base, world.scientist, "/projects/alpha/datasets/visits")
    expect(page.get_by_role("heading", name="Files of version 1")).to_be_visible()
    expect(page.get_by_role("cell", name=re.compile(r"^[0-9a-f]{64}$"))).to_have_count(2)
    expect(page.get_by_role("link", name=re.compile("Download"))).to_have_count(0)
    expect(page.locator("a[href*='/files/']")).to_have_count(0)
    expect(page.get_by_text("Raw files cannot be downloaded with your role")).to_be_visible()
    expect(page.get_by_role("button", name="Shred permanently")).to_have_count(0)
    expect(page.get_by_role("link", name="Query", exact=True)).to_be_visible()
    page.screenshot(path=str(SCIENTIST_SCREENSHOT), full_page=True)
    no_csp_trouble(console)
    context.close()
