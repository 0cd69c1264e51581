"""The experiment pages in a real browser (headless Debian Chromium through Playwright, the app
under uvicorn): a scientist opens the demo's grid search, sorts the runs by the metric, filters
them with MLflow's syntax, opens a trial and its parent, and sees the SVG charts and child runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.test_browser_datasets import log_in, no_csp_trouble, open_page
from tests.test_tracking_api import h

from sanctum.demo_tracking import EPOCHS, EXPERIMENT, log_grid_search

pytestmark = pytest.mark.browser

RUNS_SCREENSHOT = Path("/tmp/sanctum-browser-runs.png")
RUN_SCREENSHOT = Path("/tmp/sanctum-browser-run.png")
TRIAL_SCREENSHOT = Path("/tmp/sanctum-browser-trial.png")


def test_scientist_sorts_filters_and_opens_runs(chromium, live_server, client, world, runtime) -> None:
    from playwright.sync_api import expect

    log_grid_search(runtime, "alpha", world.scientist.email)
    r = client.get(
        "/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": EXPERIMENT},
        headers=h(world, "scientist"),
    )
    experiment = r.json()["experiment"]["experiment_id"]
    body = {
        "experiment_ids": [experiment],
        "filter": "params.C = '1.0'",
        "order_by": ["metrics.val_auc DESC"],
    }
    wanted = [
        run["info"]["run_name"]
        for run in client.post(
            "/api/2.0/mlflow/runs/search", json=body, headers=h(world, "scientist")
        ).json()["runs"]
    ]
    assert len(wanted) == 3

    base = live_server.url
    console: list[str] = []
    context, page = open_page(chromium, console)
    log_in(page, base, world.scientist, "/projects/alpha")
    page.get_by_role("navigation", name="Data of alpha").get_by_role("link", name="Experiments").click()
    expect(page.get_by_role("heading", name="Experiments", exact=True)).to_be_visible()
    page.get_by_role("link", name=EXPERIMENT).click()
    expect(page).to_have_url(f"{base}/projects/alpha/experiments/{experiment}")
    table = page.locator("table#runs")
    expect(table.locator("tbody tr")).to_have_count(13)

    # Sort by the metric column (largest first), then filter with MLflow's syntax.
    table.get_by_role("link", name="val_auc").click()
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("val_auc")
    page.get_by_role("searchbox", name="Filter").fill("params.C = '1.0'")
    page.get_by_role("button", name="Apply").click()
    expect(table.locator("tbody tr")).to_have_count(3)
    names = [n.strip() for n in table.locator("tbody tr td:first-child > a").all_inner_texts()]
    assert names == wanted
    page.screenshot(path=str(RUNS_SCREENSHOT), full_page=True)

    # A trial: its metric charts as inline SVG, and the way up to its parent.
    table.get_by_role("link", name=wanted[0], exact=True).click()
    expect(page.get_by_role("heading", name=f"Run {wanted[0]}")).to_be_visible()
    chart = page.get_by_role(
        "img", name=re.compile(rf"^val_auc: {EPOCHS} points, step 0 to {EPOCHS - 1}; min .*; max ")
    )
    expect(chart).to_be_visible()
    expect(chart.locator("path")).to_have_count(1)
    page.screenshot(path=str(TRIAL_SCREENSHOT), full_page=True)
    page.get_by_role("link", name="grid-search", exact=True).click()

    # The parent: the best value so far after each trial, and its children.
    expect(page.get_by_role("heading", name="Run grid-search")).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(r"^val_auc: 12 points, step 0 to 11"))).to_be_visible()
    children = page.get_by_role("table", name=re.compile("Child runs of grid-search"))
    expect(children.locator("tbody tr")).to_have_count(12)
    page.screenshot(path=str(RUN_SCREENSHOT), full_page=True)
    children.get_by_role("link", name="trial-01").click()
    expect(page.get_by_role("heading", name="Run trial-01")).to_be_visible()
    no_csp_trouble(console)
    context.close()
