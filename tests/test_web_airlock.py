"""The airlock pages driven through their forms, as a browser without JavaScript would: a request,
its review page (checks, preview, lineage, release history), two reviews, release, download, and
an import decided on its page."""

from __future__ import annotations

import pytest
from tests.test_web import Browser, csrf_of

from airlock_helpers import SAFE_TABLE, SMALL_CELL_TABLE, events, job_output, make_airlock_world, quiet_runner

PAGES = "/projects/alpha/exports"


@pytest.fixture
def setup(runtime, request, people, tmp_path):
    quiet_runner(runtime)
    client = request.getfixturevalue("client")
    world = request.getfixturevalue("world")
    aw = make_airlock_world(runtime, client, world, people, tmp_path)
    app = request.getfixturevalue("app")

    def browser(name: str) -> Browser:
        b = Browser(app)
        b.login(getattr(world, name))
        return b

    return aw, browser


def test_request_review_twice_release_and_download_through_the_pages(setup):
    aw, browser = setup
    dataset, version, job = job_output(aw, {"t.csv": SAFE_TABLE, "small.csv": SMALL_CELL_TABLE})
    scientist = browser("scientist")
    made = scientist.form(PAGES, {"title": "paper", "justification": "Table 1 <script>x</script>"})
    assert made.status_code == 303 and made.headers["location"] == f"{PAGES}/1?done=export_created"
    page = scientist.get(f"{PAGES}/1").text
    assert "&lt;script&gt;x&lt;/script&gt;" in page and f"{dataset}@{version}:t.csv" in page
    for source in (f"{dataset}@{version}:t.csv", f"{dataset}@{version}:small.csv"):
        added = scientist.form(f"{PAGES}/1/files", {"source": source}, page=f"{PAGES}/1")
        assert added.status_code == 303, added.text
    page = scientist.get(f"{PAGES}/1").text
    assert "below the minimum count of 10" in page and "Submit for review" in page
    bad = scientist.form(f"{PAGES}/1/files", {"source": "nonsense"}, page=f"{PAGES}/1")
    assert bad.status_code == 422 and "DATASET@VERSION:PATH" in bad.text
    assert scientist.post(f"{PAGES}/1/submit", {"csrf": "wrong"}).status_code == 403
    assert scientist.form(f"{PAGES}/1/submit", {}, page=f"{PAGES}/1").status_code == 303
    assert scientist.get(f"{PAGES}/1/review").status_code == 403  # scientists do not review

    checker = browser("checker")
    review = checker.get(f"{PAGES}/1/review").text
    assert "First 4 of 4 rows of t.csv" in review and "18-40" in review  # the preview
    assert f'href="/projects/alpha/jobs/{job}"' in review and "vitals@1" in review  # lineage
    assert "Nothing has been released from this project yet" in review
    voted = checker.form(
        f"{PAGES}/1/review", {"verdict": "approve", "comment": "ok"}, page=f"{PAGES}/1/review"
    )
    assert voted.status_code == 303 and voted.headers["location"].endswith("/review?done=reviewed")
    assert "Nothing waits for your verdict" in checker.get(f"{PAGES}/1/review").text

    owner = browser("owner")
    owner_view = owner.get(f"{PAGES}/1/review").text
    assert "checker@example.org</strong> approves" not in owner_view  # hidden until all are in
    owner.form(f"{PAGES}/1/review", {"verdict": "approve"}, page=f"{PAGES}/1/review")
    blocked = owner.form(f"{PAGES}/1/release", {}, page=f"{PAGES}/1")
    assert blocked.status_code == 409 and "small.csv" in blocked.text
    owner.form(f"{PAGES}/1/override", {"name": "small.csv", "reason": "published figure"}, page=f"{PAGES}/1")
    released = owner.form(f"{PAGES}/1/release", {}, page=f"{PAGES}/1")
    assert released.status_code == 303 and released.headers["location"].endswith("done=released")

    page = scientist.get(f"{PAGES}/1").text
    assert "checker@example.org</strong> approves" in page and "Download t.csv" in page
    got = scientist.get(f"{PAGES}/1/download/t.csv")
    assert got.status_code == 200 and got.content == SAFE_TABLE
    assert owner.get(f"{PAGES}/1/download/t.csv").status_code == 403
    assert [e.action for e in events(aw.runtime, "export.download")] == ["export.download"]
    assert len(events(aw.runtime, "export.preview")) >= 2  # every preview shown is audited


def test_who_sees_which_page_and_control(setup):
    aw, browser = setup
    dataset, version, _ = job_output(aw, {"t.csv": SAFE_TABLE})
    number = aw.sdk["scientist"].create_export("alpha", justification="x").number
    aw.sdk["scientist"].add_export_file("alpha", number, dataset, version, "t.csv")
    auditor = browser("auditor")
    assert auditor.get(f"{PAGES}/{number}").status_code == 404  # a draft is its requester's
    aw.sdk["scientist"].submit_export("alpha", number)
    page = auditor.get(f"{PAGES}/{number}").text
    assert "csrf" not in page.split("<main", 1)[1].split("</main>")[0]  # no forms for an auditor
    assert auditor.get(f"{PAGES}/{number}/review").status_code == 403
    assert "Create export request" not in auditor.get(PAGES).text
    assert browser("outsider").get(PAGES).status_code == 404
    checker = browser("checker")
    assert "waits for your review" in checker.get(f"{PAGES}/{number}").text
    returned = checker.form(
        f"{PAGES}/{number}/return", {"reason": "round the values"}, page=f"{PAGES}/{number}/review"
    )
    assert returned.status_code == 303
    assert "round the values" in browser("scientist").get(f"{PAGES}/{number}").text


def test_an_owner_decides_an_import_on_its_page(setup, tmp_path):
    aw, browser = setup
    source = tmp_path / "codes.csv"
    source.write_bytes(b"code,label\nI21,infarction\n")
    aw.sdk["scientist"].request_import("alpha", "reference", source, justification="labels")
    aw.sdk["scientist"].request_import("alpha", "reference", source, justification="again")
    owner = browser("owner")
    page = owner.get("/projects/alpha/imports").text
    assert "Approve import 1" in page and "codes.csv" in page
    assert (
        owner.form("/projects/alpha/imports/1/approve", {}, page="/projects/alpha/imports").status_code == 303
    )
    refused = owner.form("/projects/alpha/imports/2/reject", {"reason": " "}, page="/projects/alpha/imports")
    assert refused.status_code == 422
    owner.form("/projects/alpha/imports/2/reject", {"reason": "duplicate"}, page="/projects/alpha/imports")
    page = owner.get("/projects/alpha/imports").text
    assert "version 1" in page and "duplicate" in page
    scientist = browser("scientist")
    assert "Approve import" not in scientist.get("/projects/alpha/imports").text
    token = csrf_of(scientist.get("/projects/alpha/imports").text)
    assert scientist.post("/projects/alpha/imports/1/approve", {"csrf": token}).status_code == 403
