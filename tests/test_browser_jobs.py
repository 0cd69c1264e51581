"""The job pages in a real browser (headless Debian Chromium through Playwright, the app under
uvicorn): a scientist follows a job that ran, then re-runs it with a signature made on "their
machine" (here, in the test) and pasted into the form."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from tests.test_browser_datasets import log_in, no_csp_trouble, open_page

from conftest import missing
from jobs_helpers import make_job_world
from sanctum.jobs.runner import JobRunner
from sanctum.sdk.jobs import sign_manifest

pytestmark = pytest.mark.browser

JOB_SCREENSHOT = Path("/tmp/sanctum-browser-job.png")


def test_scientist_follows_a_job_and_reruns_it(
    chromium, live_server, client, world, people, runtime, tmp_path
):
    from playwright.sync_api import expect

    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap) is not installed")
    runtime.jobs = runner = JobRunner(runtime)  # not started: the test runs job 1 by hand
    jw = make_job_world(client, world, people, tmp_path)
    jw.sdk["scientist"].submit_job(
        "alpha", jw.code, key=jw.keys["scientist"], entrypoint="python job.py", inputs=["vitals"]
    )
    assert runner.run_one()

    base = live_server.url
    console: list[str] = []
    context, page = open_page(chromium, console)
    log_in(page, base, world.scientist, "/projects/alpha/jobs")
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    page.get_by_role("link", name="job 1", exact=True).click()
    expect(page).to_have_url(base + "/projects/alpha/jobs/1")

    graph = page.get_by_role("img", name=re.compile(r"Inputs input vitals version 1"))
    expect(graph).to_be_visible()
    expect(graph.locator("css=text").filter(has_text="job-outputs@1")).to_have_count(1)
    expect(page.locator("pre").filter(has_text="done with 3 rows")).to_be_visible()
    expect(page.locator("pre").filter(has_text="a warning")).to_be_visible()
    expect(page.get_by_text("verifies", exact=True)).to_be_visible()
    page.screenshot(path=str(JOB_SCREENSHOT), full_page=True)

    page.get_by_role("link", name="Re-run").click()
    expect(page).to_have_url(base + "/projects/alpha/jobs/1/rerun")
    expect(page.get_by_text("sanctum job sign manifest.json")).to_be_visible()
    document = json.loads(page.locator('input[name="manifest"]').get_attribute("value") or "")
    page.get_by_role("textbox", name="Signature").fill(sign_manifest(jw.keys["scientist"], document))
    page.get_by_role("button", name="Submit job").click()
    expect(page).to_have_url(base + "/projects/alpha/jobs/2?done=job_submitted")
    expect(page.get_by_role("heading", name="Job 2")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Job submitted")
    no_csp_trouble(console)
    context.close()
