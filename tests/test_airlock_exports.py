"""Export requests through the API: the whole way out of a project, and every way it must refuse."""

from __future__ import annotations

import hashlib
import shutil
import textwrap

import pytest
from sqlalchemy import select, update

from airlock_helpers import (
    SAFE_TABLE,
    SMALL_CELL_TABLE,
    events,
    job_output,
    make_airlock_world,
    quiet_runner,
)
from conftest import missing
from jobs_helpers import write_code
from sanctum.airlock.models import ExportFile, ExportReview
from sanctum.db.models import Membership, User, VersionFile
from sanctum.sdk.errors import SanctumAPIError

API = "/api/v1/projects/alpha/exports"


@pytest.fixture
def aw(runtime, request, people, tmp_path):
    quiet_runner(runtime)  # before the test client starts the app
    client = request.getfixturevalue("client")
    world = request.getfixturevalue("world")
    return make_airlock_world(runtime, client, world, people, tmp_path)


def _refused(call, status: int, code: str | None = None) -> SanctumAPIError:
    with pytest.raises(SanctumAPIError) as err:
        call()
    assert err.value.status == status, err.value
    if code is not None:
        assert err.value.code == code, err.value
    return err.value


def _requested(aw, files: dict[str, bytes], *, who: str = "scientist", submit: bool = True) -> int:
    dataset, version, _ = job_output(aw, files, who=who)
    sdk = aw.sdk[who]
    number = sdk.create_export("alpha", title="results", justification="tables for the paper").number
    for path in files:
        sdk.add_export_file("alpha", number, dataset, version, path)
    if submit:
        sdk.submit_export("alpha", number)
    return number


TABLE_JOB = textwrap.dedent(
    """
    import csv
    rows = list(csv.DictReader(open("/data/vitals/vitals.csv")))
    mean = sum(int(r["hr"]) for r in rows) / len(rows)
    open("/output/summary.csv", "w").write(f"measure,value\\nmean_hr,{mean}\\n")
    """
)


def test_a_sandboxed_jobs_output_is_requested_reviewed_twice_released_and_downloaded(
    runtime, request, people, tmp_path
):
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap) is not installed")
    quiet_runner(runtime)
    client = request.getfixturevalue("client")
    aw = make_airlock_world(runtime, client, request.getfixturevalue("world"), people, tmp_path)
    code = write_code(tmp_path / "table-code", TABLE_JOB)
    sdk = aw.sdk
    job = sdk["scientist"].submit_job(
        "alpha", code, key=aw.jw.keys["scientist"], entrypoint="python job.py", inputs=["vitals"]
    )
    assert runtime.jobs.run_one()
    done = sdk["scientist"].get_job("alpha", job.id)
    assert done.state == "succeeded", done.reason

    created = sdk["scientist"].create_export(
        "alpha", title="summary", justification="mean heart rate for the abstract"
    )
    assert created.state == "draft" and created.required_approvals == 2
    added = sdk["scientist"].add_export_file(
        "alpha", created.number, "job-outputs", done.output.version, "summary.csv"
    )
    (file,) = added.files
    assert file.check_verdict == "pass" and file.columns == ["measure", "value"] and file.row_count == 1
    assert file.job == job.id and file.job_manifest_sha256 == done.manifest_sha256
    assert sdk["scientist"].submit_export("alpha", created.number).state == "submitted"

    first = sdk["checker"].review_export("alpha", created.number, "approve", "fine")
    assert first.state == "in_review" and first.verdicts_hidden and first.reviewers_so_far == 1
    preview = sdk["owner"].preview_export_file("alpha", created.number, "summary.csv")
    assert preview.kind == "table" and preview.rows == [["mean_hr", 74.0]]
    second = sdk["owner"].review_export("alpha", created.number, "approve")
    assert second.state == "approved" and not second.verdicts_hidden
    assert {(r.reviewer, r.verdict) for r in second.reviews} == {
        ("checker@example.org", "approve"),
        ("owner@example.org", "approve"),
    }
    released = sdk["owner"].release_export("alpha", created.number)
    assert released.state == "released" and released.released_by == "owner@example.org"

    target = sdk["scientist"].download_export_file("alpha", created.number, "summary.csv", tmp_path)
    data = target.read_bytes()
    assert data == b"measure,value\nmean_hr,74.0\n"
    assert hashlib.sha256(data).hexdigest() == file.sha256
    (history,) = sdk["checker"].export_history("alpha")
    assert (history.export, history.sha256, history.columns) == (
        created.number,
        file.sha256,
        ["measure", "value"],
    )
    assert history.job == job.id and history.job_manifest_sha256 == done.manifest_sha256
    actions = [e.action for e in events(runtime, "export.")]
    assert actions == [
        "export.create", "export.file.add", "export.submit", "export.review", "export.preview",
        "export.review", "export.approve", "export.release", "export.download",
    ]  # fmt: skip


def test_the_permission_matrix(aw, people, client):
    scientist2 = people.create("scientist2@example.org")
    r = client.post(
        "/api/v1/projects/alpha/members",
        json={"email": scientist2.email, "role": "data_scientist"},
        headers=aw.h("owner"),
    )
    assert r.status_code == 201
    number = _requested(aw, {"t.csv": SAFE_TABLE}, submit=False)
    h = aw.h
    # A draft is its requester's alone.
    assert client.get(f"{API}/{number}", headers=h("checker")).status_code == 404
    aw.sdk["scientist"].submit_export("alpha", number)
    for who in ("checker", "auditor", "owner", "scientist"):
        assert client.get(f"{API}/{number}", headers=h(who)).status_code == 200, who
        assert [e["number"] for e in client.get(API, headers=h(who)).json()] == [number], who
    other = people.headers(scientist2)
    assert client.get(f"{API}/{number}", headers=other).status_code == 404
    assert client.get(API, headers=other).json() == []
    for who in ("outsider", "admin", "other_owner"):
        assert client.get(f"{API}/{number}", headers=h(who)).status_code == 404
        assert client.get(API, headers=h(who)).status_code == 404
    # Who may ask, review, release, download.
    for who in ("checker", "auditor"):
        r = client.post(API, json={"justification": "x"}, headers=h(who))
        assert r.status_code == 403, who
    assert (
        client.post(
            f"{API}/{number}/reviews", json={"verdict": "approve"}, headers=h("scientist")
        ).status_code
        == 403
    )
    assert (
        client.post(f"{API}/{number}/reviews", json={"verdict": "approve"}, headers=h("auditor")).status_code
        == 403
    )
    assert client.post(f"{API}/{number}/release", headers=h("checker")).status_code == 403
    assert (
        client.post(
            f"{API}/{number}/files",
            json={"dataset": "job-outputs", "version": 1, "path": "t.csv"},
            headers=h("owner"),
        ).status_code
        == 403
    )  # the owner is not the requester
    # A reviewer votes once.
    aw.sdk["checker"].review_export("alpha", number, "approve")
    _refused(lambda: aw.sdk["checker"].review_export("alpha", number, "approve"), 409, "already_reviewed")
    # The owner's own request: they may not review it.
    own = _requested(aw, {"o.csv": SAFE_TABLE}, who="owner")
    _refused(lambda: aw.sdk["owner"].review_export("alpha", own, "approve"), 403, "own_request")
    # Withdraw: the requester only; the owner may not withdraw someone else's request.
    _refused(lambda: aw.sdk["owner"].withdraw_export("alpha", number), 403, "not_requester")
    assert aw.sdk["scientist"].withdraw_export("alpha", number, "wrong table").state == "withdrawn"
    _refused(lambda: aw.sdk["scientist"].submit_export("alpha", number), 409, "wrong_state")


def test_verdicts_stay_hidden_until_every_verdict_is_in(aw, client):
    number = _requested(aw, {"t.csv": SAFE_TABLE})
    aw.sdk["checker"].review_export("alpha", number, "reject", "the age bands are too narrow")
    for who in ("owner", "scientist", "auditor"):
        seen = aw.sdk[who].get_export("alpha", number)
        assert seen.state == "in_review" and seen.verdicts_hidden and seen.reviews == [], who
        assert "too narrow" not in client.get(f"{API}/{number}", headers=aw.h(who)).text
    mine = aw.sdk["checker"].get_export("alpha", number)
    assert [(r.reviewer, r.verdict) for r in mine.reviews] == [("checker@example.org", "reject")]
    (vote,) = events(aw.runtime, "export.review")
    assert "reject" not in vote.details and "too narrow" not in vote.details
    assert aw.sdk["owner"].get_export("alpha", number).your_pending_files == ["t.csv"]
    decided = aw.sdk["owner"].review_export("alpha", number, "approve")
    assert decided.state == "rejected" and "too narrow" in decided.state_reason
    assert {r.verdict for r in aw.sdk["scientist"].get_export("alpha", number).reviews} == {
        "approve",
        "reject",
    }
    (rejected,) = events(aw.runtime, "export.reject")
    assert '"verdict":"reject"' in rejected.details and "checker@example.org" in rejected.details


def test_a_returned_request_keeps_reviews_of_unchanged_files_and_resets_a_changed_one(aw):
    dataset, version, _ = job_output(aw, {"a.csv": SAFE_TABLE, "b.csv": SAFE_TABLE})
    _, newer, _ = job_output(aw, {"b.csv": SAFE_TABLE.replace(b"25", b"26")})
    sdk = aw.sdk
    number = sdk["scientist"].create_export("alpha", justification="two tables").number
    sdk["scientist"].add_export_file("alpha", number, dataset, version, "a.csv")
    sdk["scientist"].add_export_file("alpha", number, dataset, version, "b.csv")
    sdk["scientist"].submit_export("alpha", number)
    sdk["checker"].review_export("alpha", number, "approve")
    _refused(lambda: sdk["checker"].return_export("alpha", number, ""), 422, "reason_required")
    returned = sdk["owner"].return_export("alpha", number, "use the newer run for b.csv")
    assert returned.state == "returned"
    changed = sdk["scientist"].add_export_file("alpha", number, dataset, newer, "b.csv")
    assert {f.name: f.version for f in changed.files} == {"a.csv": version, "b.csv": newer}
    (replace,) = events(aw.runtime, "export.file.replace")
    assert '"reviews_reset":1' in replace.details
    assert sdk["scientist"].update_export(
        "alpha", number, justification="two tables, b rerun"
    ).justification == ("two tables, b rerun")
    resubmitted = sdk["scientist"].submit_export("alpha", number)
    _refused(lambda: sdk["scientist"].update_export("alpha", number, title="late"), 409, "wrong_state")
    assert resubmitted.state == "in_review"  # a.csv still holds the checker's verdict
    assert sdk["checker"].get_export("alpha", number).your_pending_files == ["b.csv"]
    assert sdk["checker"].review_export("alpha", number, "approve").state == "in_review"
    _refused(lambda: sdk["checker"].review_export("alpha", number, "approve"), 409, "already_reviewed")
    assert sdk["owner"].review_export("alpha", number, "approve").state == "approved"
    with aw.runtime.db.session(write=False) as db:
        counts = {
            name: len(db.scalars(select(ExportReview).where(ExportReview.file_id == fid)).all())
            for fid, name in db.execute(select(ExportFile.id, ExportFile.name)).all()
        }
    assert counts == {"a.csv": 2, "b.csv": 2}


def test_files_outside_the_projects_job_outputs_are_refused(aw, client):
    owner = aw.sdk["owner"]
    owner.create_dataset("alpha", "imported")
    draft = owner.create_version("alpha", "imported").number
    owner.upload_file("alpha", "imported", draft, "t.csv", SAFE_TABLE)
    owner.commit_version("alpha", "imported", draft)
    dataset, version, _ = job_output(aw, {"t.csv": SAFE_TABLE})
    sdk = aw.sdk["scientist"]
    number = sdk.create_export("alpha", justification="x").number
    err = _refused(lambda: sdk.add_export_file("alpha", number, "imported", 1, "t.csv"), 422, "not_an_output")
    assert "not produced by a job" in err.message
    _refused(lambda: sdk.add_export_file("alpha", number, dataset, version + 5, "t.csv"), 404)
    _refused(lambda: sdk.add_export_file("alpha", number, dataset, version, "nope.csv"), 404)
    _refused(lambda: sdk.add_export_file("alpha", number, dataset, version, "../t.csv"), 422)
    # Another project's outputs, even shared in, are its owners' to export.
    beta = client.post(
        "/api/v1/projects/beta/datasets", json={"name": "outs", "kind": "files"}, headers=aw.h("other_owner")
    )
    assert beta.status_code == 201
    offer = client.post(
        "/api/v1/projects/beta/datasets/outs/shares", json={"project": "alpha"}, headers=aw.h("other_owner")
    )
    assert offer.status_code == 201, offer.text
    assert (
        client.post(
            f"/api/v1/projects/alpha/shares/{offer.json()['id']}/accept", headers=aw.h("owner")
        ).status_code
        == 200
    )
    _refused(lambda: sdk.add_export_file("alpha", number, "beta.outs", 1, "t.csv"), 422, "not_an_output")
    assert aw.sdk["scientist"].get_export("alpha", number).files == []
    assert events(aw.runtime, "export.file") == []
    _refused(lambda: sdk.submit_export("alpha", number), 422, "no_files")
    # Nor can anything be imported into a job output dataset (it would look like an output).
    r = client.post(
        "/api/v1/projects/alpha/imports",
        json={"dataset": dataset, "filename": "t.csv", "justification": "x"},
        headers=aw.h("scientist"),
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_an_import_target"


def test_a_failed_check_blocks_release_until_an_owner_overrides_it_in_writing(aw):
    aw.sdk["owner"].set_export_approvals("alpha", 1)
    number = _requested(aw, {"small.csv": SMALL_CELL_TABLE})
    (file,) = aw.sdk["scientist"].get_export("alpha", number).files
    assert file.check_verdict == "fail" and file.blocks_release
    assert any("below the minimum count of 10" in f.message for f in file.findings)
    assert aw.sdk["checker"].review_export("alpha", number, "approve").state == "approved"
    _refused(lambda: aw.sdk["owner"].release_export("alpha", number), 409, "check_failed")
    _refused(lambda: aw.sdk["scientist"].override_export_check("alpha", number, "small.csv", "fine"), 403)
    _refused(lambda: aw.sdk["checker"].override_export_check("alpha", number, "small.csv", "fine"), 403)
    _refused(lambda: aw.sdk["owner"].override_export_check("alpha", number, "small.csv", "  "), 422)
    overridden = aw.sdk["owner"].override_export_check(
        "alpha", number, "small.csv", "the cell of 3 is a published national figure"
    )
    (file,) = overridden.files
    assert not file.blocks_release and file.override_by == "owner@example.org"
    (event,) = events(aw.runtime, "export.override")
    assert "published national figure" in event.details and "below the minimum count" in event.details
    assert aw.sdk["owner"].release_export("alpha", number).state == "released"
    # An owner's own request: someone else must override it.
    own = _requested(aw, {"own.csv": SMALL_CELL_TABLE}, who="owner")
    aw.sdk["checker"].review_export("alpha", own, "approve")
    _refused(
        lambda: aw.sdk["owner"].override_export_check("alpha", own, "own.csv", "mine"), 403, "own_request"
    )


def test_bytes_changed_after_review_are_refused_and_their_reviews_reset(aw):
    aw.sdk["owner"].set_export_approvals("alpha", 1)
    dataset, version, _ = job_output(aw, {"t.csv": SAFE_TABLE, "other.csv": SAFE_TABLE.replace(b"F,", b"W,")})
    sdk = aw.sdk["scientist"]
    number = sdk.create_export("alpha", justification="x").number
    sdk.add_export_file("alpha", number, dataset, version, "t.csv")
    sdk.submit_export("alpha", number)
    reviewed = aw.sdk["checker"].review_export("alpha", number, "approve").files[0].sha256

    def swap_blob() -> None:  # someone with database access points the file at other bytes
        with aw.runtime.db.session() as db:
            other = db.scalar(select(VersionFile.blob_id).where(VersionFile.path == "other.csv"))
            db.execute(update(VersionFile).where(VersionFile.path == "t.csv").values(blob_id=other))

    swap_blob()
    err = _refused(lambda: aw.sdk["owner"].release_export("alpha", number), 409, "files_changed")
    assert "t.csv" in err.message
    after = aw.sdk["owner"].get_export("alpha", number)
    assert after.state == "in_review" and after.files[0].sha256 != reviewed
    assert aw.sdk["checker"].get_export("alpha", number).your_pending_files == ["t.csv"]
    (changed,) = events(aw.runtime, "export.file.changed")
    assert changed.outcome == "denied" and reviewed in changed.details
    # Reviewed again (the new bytes), released; then changed again: the download is refused.
    aw.sdk["checker"].review_export("alpha", number, "approve")
    assert aw.sdk["owner"].release_export("alpha", number).state == "released"
    with aw.runtime.db.session() as db:
        db.execute(update(ExportFile).values(sha256="0" * 64))
    _refused(
        lambda: sdk.download_export_file("alpha", number, "t.csv", aw.jw.code.parent), 409, "files_changed"
    )
    assert aw.sdk["owner"].get_export("alpha", number).state == "in_review"


def test_downloads_only_after_release_and_only_by_the_requester(aw, client):
    aw.sdk["owner"].set_export_approvals("alpha", 1)
    number = _requested(aw, {"t.csv": SAFE_TABLE})
    url = f"{API}/{number}/files/t.csv"
    assert client.get(url, headers=aw.h("scientist")).json()["error"]["code"] == "not_released"
    aw.sdk["checker"].review_export("alpha", number, "approve")
    aw.sdk["owner"].release_export("alpha", number)
    assert client.get(url, headers=aw.h("owner")).status_code == 403  # an owner, but not the requester
    for who in ("checker", "auditor"):
        assert client.get(url, headers=aw.h(who)).status_code == 403
    assert client.get(url, headers=aw.h("outsider")).status_code == 404
    got = client.get(url, headers=aw.h("scientist"))
    assert got.status_code == 200 and got.content == SAFE_TABLE
    assert client.get(f"{API}/{number}/files/nope.csv", headers=aw.h("scientist")).status_code == 404
    (download,) = events(aw.runtime, "export.download")
    assert download.actor_email == "scientist@example.org"


def test_acro_results_are_shown_beside_the_files_they_judge(aw):
    results = (
        b'{"version": "0.4.5", "results": {"output_0": {"uid": "output_0", "status": "fail", "type": "table",'
        b' "summary": "fail; threshold: 1 cells suppressed", "files": [{"name": "t.csv", "sdc": {}}],'
        b' "exception": "", "outcome": {}, "command": "", "timestamp": "", "comments": [],'
        b' "properties": {}}}}'
    )
    number = _requested(aw, {"t.csv": SAFE_TABLE, "results.json": results}, submit=False)
    files = {f.name: f for f in aw.sdk["scientist"].get_export("alpha", number).files}
    acro = [f for f in files["t.csv"].findings if f.rule == "acro"]
    assert [f.verdict for f in acro] == ["fail"] and "threshold" in acro[0].message
    assert files["t.csv"].check_verdict == "fail"
    assert "ACRO results for 1 output(s)" in files["results.json"].findings[0].message


def test_the_number_of_approvals_is_an_owners_setting(aw, client):
    url = "/api/v1/projects/alpha/settings"
    assert client.patch(url, json={"export_approvals": 1}, headers=aw.h("scientist")).status_code == 403
    assert client.patch(url, json={"export_approvals": 3}, headers=aw.h("owner")).status_code == 422
    assert aw.sdk["owner"].set_export_approvals("alpha", 1).export_approvals == 1
    (event,) = events(aw.runtime, "project.settings")
    assert '"export_approvals":{"from":2,"to":1}' in event.details
    number = _requested(aw, {"t.csv": SAFE_TABLE})
    assert aw.sdk["checker"].review_export("alpha", number, "approve").state == "approved"


def test_a_reviewer_whose_role_changes_loses_sight_and_vote_at_once(aw, client):
    number = _requested(aw, {"t.csv": SAFE_TABLE})
    with aw.runtime.db.session() as db:
        user_id = db.scalar(select(User.id).where(User.email == "checker@example.org"))
        db.execute(update(Membership).where(Membership.user_id == user_id).values(role="data_scientist"))
    assert client.get(f"{API}/{number}", headers=aw.h("checker")).status_code == 404
    assert (
        client.post(
            f"{API}/{number}/reviews", json={"verdict": "approve"}, headers=aw.h("checker")
        ).status_code
        == 403
    )


def test_every_transition_is_audited_with_who_from_to_and_why(aw):
    import json

    number = _requested(aw, {"t.csv": SAFE_TABLE})
    aw.sdk["checker"].return_export("alpha", number, "add a caption")
    aw.sdk["scientist"].submit_export("alpha", number)
    aw.sdk["checker"].review_export("alpha", number, "approve")
    aw.sdk["owner"].review_export("alpha", number, "approve")
    aw.sdk["scientist"].withdraw_export("alpha", number, "superseded by export 2")
    moves = [
        (e.action, e.actor_email, json.loads(e.details)["from"], json.loads(e.details)["to"],
         json.loads(e.details)["reason"])
        for e in events(aw.runtime, "export.")
        if "from" in json.loads(e.details)
    ]  # fmt: skip
    assert moves == [
        ("export.submit", "scientist@example.org", "draft", "submitted", ""),
        ("export.return", "checker@example.org", "submitted", "returned", "add a caption"),
        ("export.submit", "scientist@example.org", "returned", "submitted", ""),
        ("export.review", "checker@example.org", "submitted", "in_review", ""),
        ("export.review", "owner@example.org", "in_review", "in_review", ""),
        ("export.approve", "owner@example.org", "in_review", "approved", "approved by 2 reviewer(s)"),
        ("export.withdraw", "scientist@example.org", "approved", "withdrawn", "superseded by export 2"),
    ]
    assert all(e.target == f"export:{number}" for e in events(aw.runtime, "export."))
