"""The job pages: list, one job (manifest, signature, lineage graph, logs, cancel) and the re-run
form, per role, driven through their forms as a browser without JavaScript would.

Jobs are submitted through the REST API (as the CLI does) and run by a runner the test drives by
hand (``run_one``), as in test_jobs_api.
"""

from __future__ import annotations

import html
import json
import re
import shutil

import pytest
from tests.routes import _calls, api_routes
from tests.test_web import Browser, csrf_of

from conftest import missing
from jobs_helpers import JobWorld, make_job_world, write_code
from sanctum.access.permissions import Permission
from sanctum.api.deps import InProject
from sanctum.jobs.runner import JobRunner
from sanctum.sdk.jobs import sign_manifest
from sanctum.web.session import ProjectPage, web_principal

HTML_JOB = (
    'import sys\nprint("<b>bold</b> <script>alert(1)</script> & more")\n'
    'print("<i>err</i>", file=sys.stderr)\n'
)
READERS = ("owner", "scientist", "checker", "auditor")


@pytest.fixture
def runner(runtime):
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap) is not installed")
    if runtime.jobs is not None:  # an app's lifespan already started one: a test must not race it
        runtime.jobs.stop()
    runtime.jobs = JobRunner(runtime)  # present but not started: the test calls run_one()
    return runtime.jobs


@pytest.fixture
def jw(runner, client, world, people, tmp_path) -> JobWorld:
    return make_job_world(client, world, people, tmp_path)


@pytest.fixture
def browser(app):
    return lambda: Browser(app)


def login(browser, person) -> Browser:
    b = browser()
    b.login(person)
    return b


def submit(jw: JobWorld, who: str = "scientist", **kwargs):
    code = kwargs.pop("code", jw.code)
    args = {"entrypoint": "python job.py", "inputs": ["vitals"], "parameters": {"scale": 2}}
    args.update(kwargs)
    return jw.sdk[who].submit_job("alpha", code, key=jw.keys[who], **args)


def hidden_manifest(page: str) -> dict:
    match = re.search(r'name="manifest" value="([^"]*)"', page)
    assert match, "no manifest on the re-run form"
    return json.loads(html.unescape(match.group(1)))


# --------------------------------------------------------------------------- routes


EXPECTED = {
    ("GET", "/projects/{project}/jobs"): Permission.JOBS_READ,
    ("GET", "/projects/{project}/jobs/{number}"): Permission.JOBS_READ,
    ("POST", "/projects/{project}/jobs/{number}/cancel"): Permission.JOBS_SUBMIT,
    ("GET", "/projects/{project}/jobs/{number}/rerun"): Permission.JOBS_SUBMIT,
    ("POST", "/projects/{project}/jobs/{number}/rerun"): Permission.JOBS_SUBMIT,
}


def test_every_job_page_has_its_permission_and_forms_check_csrf(app) -> None:
    seen = {}
    for route in api_routes(app):
        if not route.path.startswith("/projects/{project}/jobs"):
            continue
        calls = list(_calls(route.dependant))
        guards = [c for c in calls if isinstance(c, InProject)]
        assert len(guards) == 1 and isinstance(guards[0], ProjectPage), route.path
        for method in route.methods - {"HEAD"}:
            seen[(method, route.path)] = guards[0].permission
            if method != "GET":
                assert web_principal in calls, route.path
    assert seen == EXPECTED


# --------------------------------------------------------------------------- reading


def test_every_member_sees_the_list_and_the_job_outsiders_find_nothing(jw, runner, browser, world) -> None:
    submit(jw)
    assert runner.run_one()
    for name in READERS:
        b = login(browser, getattr(world, name))
        page = b.get("/projects/alpha/jobs")
        assert page.status_code == 200, name
        assert 'href="/projects/alpha/jobs/1"' in page.text and "succeeded" in page.text
        assert "scientist@example.org" in page.text
        page = b.get("/projects/alpha/jobs/1")
        text = page.text
        assert page.status_code == 200, name
        assert "<svg" in text and "vitals@1" in text and "job-outputs@1" in text
        assert 'href="/projects/alpha/datasets/vitals?version=1"' in text
        assert "done with 3 rows" in text and "a warning" in text
        assert '<span class="outcome-ok">verifies</span>' in text
        assert jw.sdk["scientist"].get_job("alpha", 1).signer in text
        assert "&#34;entrypoint&#34;: [" in text and "&#34;python&#34;" in text  # pretty, escaped JSON
        assert 'href="/api/v1/projects/alpha/lineage/job-outputs/1/ro-crate"' in text
        assert "Cancel job" not in text  # it has ended
        crate = b.get("/api/v1/projects/alpha/lineage/job-outputs/1/ro-crate")  # the session reads the API
        assert crate.status_code == 200 and crate.json()["@graph"], name
        may_rerun = name in ("owner", "scientist")
        assert ('href="/projects/alpha/jobs/1/rerun"' in text) == may_rerun, name
    for name in ("outsider", "other_owner"):
        b = login(browser, getattr(world, name))
        for path in ("/projects/alpha/jobs", "/projects/alpha/jobs/1", "/projects/alpha/jobs/1/rerun"):
            assert b.get(path).status_code == 404, (name, path)


def test_the_list_filters_by_state(jw, browser, world) -> None:
    submit(jw)
    b = login(browser, world.auditor)
    assert 'href="/projects/alpha/jobs/1"' in b.get("/projects/alpha/jobs?state=queued").text
    page = b.get("/projects/alpha/jobs?state=succeeded")
    assert page.status_code == 200 and 'href="/projects/alpha/jobs/1"' not in page.text
    assert "No succeeded jobs." in page.text
    page = b.get("/projects/alpha/jobs?state=bogus")
    assert page.status_code == 400 and "Unknown job state." in page.text
    assert b.get("/projects/alpha/jobs/99").status_code == 404


def test_logs_with_html_are_escaped(jw, runner, browser, world, tmp_path) -> None:
    code = write_code(tmp_path / "html-code", HTML_JOB)
    submit(jw, code=code, inputs=[])
    assert runner.run_one()
    page = login(browser, world.checker).get("/projects/alpha/jobs/1")  # Browser.get checks no <script
    assert page.status_code == 200
    assert "&lt;b&gt;bold&lt;/b&gt; &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page.text
    assert "&lt;i&gt;err&lt;/i&gt;" in page.text and "<b>bold" not in page.text


# --------------------------------------------------------------------------- controls


def test_checker_sees_no_controls_and_its_posts_are_refused(jw, browser, world) -> None:
    submit(jw)  # queued: never run, so it can be cancelled
    checker = login(browser, world.checker)
    text = checker.get("/projects/alpha/jobs/1").text
    assert "Cancel job" not in text and "/rerun" not in text
    csrf = checker.csrf()
    assert checker.get("/projects/alpha/jobs/1/rerun").status_code == 403
    assert checker.post("/projects/alpha/jobs/1/cancel", {"csrf": csrf}).status_code == 403
    r = checker.post("/projects/alpha/jobs/1/rerun", {"csrf": csrf, "manifest": "{}", "signature": "x"})
    assert r.status_code == 403
    assert jw.sdk["scientist"].get_job("alpha", 1).state == "queued"


def test_cancel_needs_the_csrf_token_then_ends_a_queued_job(jw, browser, world) -> None:
    submit(jw)
    scientist = login(browser, world.scientist)
    page = scientist.get("/projects/alpha/jobs/1")
    assert "Cancel job" in page.text
    assert scientist.post("/projects/alpha/jobs/1/cancel").status_code == 403
    assert scientist.post("/projects/alpha/jobs/1/cancel", {"csrf": "wrong"}).status_code == 403
    assert jw.sdk["scientist"].get_job("alpha", 1).state == "queued"
    r = scientist.post("/projects/alpha/jobs/1/cancel", {"csrf": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/projects/alpha/jobs/1?done=job_cancelled"
    assert jw.sdk["scientist"].get_job("alpha", 1).state == "cancelled"
    page = scientist.get(r.headers["location"])
    assert "Cancel requested" in page.text and "Cancel job" not in page.text
    r = scientist.post("/projects/alpha/jobs/1/cancel", {"csrf": csrf_of(page.text)})
    assert r.status_code == 409 and "already ended" in r.text


# --------------------------------------------------------------------------- re-run


def test_rerun_with_a_signature_made_elsewhere_creates_job_2(jw, runner, browser, world) -> None:
    first = submit(jw)
    assert runner.run_one()
    scientist = login(browser, world.scientist)
    form = scientist.get("/projects/alpha/jobs/1/rerun")
    assert form.status_code == 200 and "sanctum job sign manifest.json" in form.text
    document = hidden_manifest(form.text)
    old = jw.sdk["scientist"].get_job("alpha", 1).manifest
    for field in (
        "bundle_sha256",
        "bundle_size",
        "entrypoint",
        "inputs",
        "parameters",
        "output",
        "resources",
    ):
        assert document[field] == old[field], field
    assert document["nonce"] != old["nonce"] and document["signer"] == first.signer
    signature = sign_manifest(jw.keys["scientist"], document)
    r = scientist.post(
        "/projects/alpha/jobs/1/rerun",
        {"csrf": csrf_of(form.text), "manifest": json.dumps(document), "signature": signature},
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/projects/alpha/jobs/2?done=job_submitted"
    page = scientist.get(r.headers["location"])
    assert page.status_code == 200 and "Job submitted" in page.text
    assert runner.run_one()  # the stored bundle of job 1 runs again
    job = jw.sdk["scientist"].get_job("alpha", 2)
    assert job.state == "succeeded", job.reason
    assert job.code_sha256 == first.code_sha256 and job.output is not None and job.output.version == 2


def test_a_wrong_signature_is_shown_on_the_form_and_nothing_is_stored(jw, browser, world) -> None:
    submit(jw)
    scientist = login(browser, world.scientist)
    form = scientist.get("/projects/alpha/jobs/1/rerun")
    document = hidden_manifest(form.text)
    forged = sign_manifest(jw.keys["owner"], document)  # someone else's key
    r = scientist.post(
        "/projects/alpha/jobs/1/rerun",
        {"csrf": csrf_of(form.text), "manifest": json.dumps(document), "signature": forged},
    )
    assert r.status_code == 403 and "The signature does not match the manifest" in r.text
    assert hidden_manifest(r.text) == document, "the manifest stays on the form"
    r = scientist.post(
        "/projects/alpha/jobs/1/rerun",
        {"csrf": csrf_of(form.text), "manifest": json.dumps(document), "signature": "x" * 300},
    )
    assert 400 <= r.status_code < 500 and 'role="alert"' in r.text
    r = scientist.post(
        "/projects/alpha/jobs/1/rerun", {"csrf": csrf_of(form.text), "manifest": "[1", "signature": forged}
    )
    assert r.status_code == 422 and "not JSON" in r.text
    assert (
        scientist.post("/projects/alpha/jobs/1/rerun", {"manifest": "{}", "signature": "x"}).status_code
        == 403
    )
    assert [j.id for j in jw.sdk["scientist"].list_jobs("alpha")] == [1]
