"""The GDPR compliance report: what it shows (and holds back), who may read it, as JSON, as a page
and as an HTML file from the CLI."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from dmp_helpers import dataset, days, plan, put
from ingest_helpers import CSV_TEXT, POLICY, tar_body
from sanctum.airlock.models import ExportFile, ExportRequest, ExportReview
from sanctum.cli.main import app as cli_app
from sanctum.db.models import Project, User
from sanctum.dmp import lifecycle
from test_web import Browser

API = "/api/v1/projects/alpha"
runner = CliRunner()


@pytest.fixture
def evidence(client, world, runtime):
    """A project with a plan, ingested and raw data, a share, refusals, an erasure and two exports."""
    h = world.h["owner"]
    r = client.post(f"{API}/ingests", json={"dataset": "clinical", "policy": POLICY}, headers=h)
    number = r.json()["id"]
    client.post(f"{API}/ingests/{number}/batches", content=tar_body({"v.csv": CSV_TEXT.encode()}), headers=h)
    assert client.post(f"{API}/ingests/{number}/finish", headers=h).status_code == 200
    for name in ("scans", "old"):
        assert (
            client.post(f"{API}/datasets", json={"name": name, "kind": "files"}, headers=h).status_code == 201
        )
    r = client.post(f"{API}/datasets/scans/shares", json={"project": "beta", "access": "read"}, headers=h)
    assert r.status_code == 201
    document = plan(
        dataset("clinical", personal="yes", access="closed", until=days(400), location="NL"),
        dataset("old", until=days(-1)),
        dataset("scans", until=days(20)),
        dataset("ghost"),
        controls={"reviewers": 1},
    )
    assert put(client, h, document, confirm_shred=True).status_code == 201
    assert client.post(f"{API}/datasets/clinical/versions", headers=h).status_code == 201
    assert (
        client.put(f"{API}/datasets/clinical/versions/2/files/raw.csv", content=b"x", headers=h).status_code
        == 403
    )
    assert lifecycle.run(runtime).shredded  # 'old' goes, 'scans' is warned about
    r = client.patch(f"{API}/members/{world.checker.email}", json={"role": "auditor"}, headers=h)
    assert r.status_code == 200, r.text
    with runtime.db.session() as db:
        project = db.scalar(select(Project).where(Project.name == "alpha"))
        people = dict(db.execute(select(User.email, User.id)).all())
        for number, state, verdict in ((1, "in_review", "approve"), (2, "released", "reject")):
            request = ExportRequest(
                project_id=project.id,
                number=number,
                title=f"table {number}",
                state=state,
                requested_by_id=people["scientist@example.org"],
                required_approvals=1,
                dmp_version=1,
            )
            db.add(request)
            db.flush()
            file = ExportFile(
                request_id=request.id,
                name="t.csv",
                dataset_name="job-outputs",
                version_number=1,
                path="t.csv",
                size=10,
                sha256="ab" * 32,
                job_number=1,
                job_manifest_sha256="cd" * 32,
                check_verdict="pass",
                check_reasons=[],
            )
            db.add(file)
            db.flush()
            db.add(
                ExportReview(
                    request_id=request.id,
                    file_id=file.id,
                    verdict=verdict,
                    reviewer_id=people["owner@example.org"],
                )
            )
    return world


def test_the_report_shows_the_evidence_and_holds_back_open_verdicts(client, evidence) -> None:
    r = client.get(f"{API}/reports/gdpr", headers=evidence.h["auditor"])
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["report"] == "sanctum.gdpr-report/v1" and report["generated_by"] == "auditor@example.org"
    assert report["dmp"]["version"] == 1 and report["dmp"]["controls"] == {"reviewers": 1}
    assert report["dmp"]["described_but_absent"] == ["old", "ghost"]  # "old" was erased
    by_name = {d["name"]: d for d in report["datasets"]}
    clinical = by_name["clinical"]
    assert clinical["dmp"]["personal_data"] == "yes" and clinical["dmp"]["data_access"] == "closed"
    assert clinical["dmp"]["locations"] == ["NL"] and clinical["latest_version"] == 1
    (ingest,) = clinical["deidentification"]
    assert (
        ingest["state"] == "finished"
        and ingest["counts"]["stored"] == 1
        and ingest["options"]["dates"] == "shift"
    )
    erased = [d for d in report["datasets"] if d["shredded_at"]]
    assert len(erased) == 1 and erased[0]["dmp"] is None and erased[0]["name"].startswith("shredded-")
    assert report["anonymity"] == {
        **report["anonymity"],
        "available": False,
        "tables": [],
    }  # no table datasets
    members = {m["email"]: m["role"] for m in report["access"]["members"]}
    assert members["checker@example.org"] == "auditor"
    assert [e["action"] for e in report["access"]["history"]].count("member.add") == 3
    assert report["access"]["history"][-1]["action"] == "member.set_role"
    (share,) = report["shares"]
    assert (share["dataset"], share["direction"], share["other_project"]) == ("alpha.scans", "out", "beta")
    retention = {d["dataset"]: d["status"] for d in report["retention"]["datasets"]}
    assert retention == {"clinical": "scheduled", "scans": "expiring"}
    assert {e["action"] for e in report["retention"]["events"]} == {
        "dataset.shred",
        "dmp.retention.shred",
        "dmp.retention.warn",
    }
    codes = {e["details"].get("code") for e in report["refusals"]}
    assert "deid_required" in codes
    open_request, released = report["airlock"]["exports"]
    assert open_request["reviews_hidden"] and open_request["reviews"][0]["verdict"] is None
    assert not released["reviews_hidden"] and released["reviews"][0] == {
        "file": "t.csv",
        "reviewer": "owner@example.org",
        "verdict": "reject",
        "at": released["reviews"][0]["at"],
    }
    assert released["dmp_version"] == 1 and released["requested_by"] == "scientist@example.org"
    assert report["audit_chain"]["ok"] and report["audit_chain"]["events"] > 20
    assert report["jobs"] == []


def test_the_anonymity_section_shows_each_tables_stored_report(app, client, world) -> None:
    """The latest version of every table: its report stored at commit, or none without QIs."""
    h = world.h["owner"]
    declared = {**POLICY, "quasi_identifiers": ["hba1c"], "sensitive": ["admitted"]}
    for name, policy in (("visits", declared), ("plain", POLICY)):
        r = client.post(
            f"{API}/ingests", json={"dataset": name, "kind": "table", "policy": policy}, headers=h
        )
        number = r.json()["id"]
        body = tar_body({"v.csv": CSV_TEXT.encode()})
        client.post(f"{API}/ingests/{number}/batches", content=body, headers=h)
        assert client.post(f"{API}/ingests/{number}/finish", headers=h).status_code == 200
    section = client.get(f"{API}/reports/gdpr", headers=h).json()["anonymity"]
    assert section["available"] is True and "stored with every table version" in section["note"]
    plain, visits = section["tables"]
    assert plain == {"dataset": "plain", "version": 1, "report": None}
    assert (visits["dataset"], visits["quasi_identifiers"], visits["k_threshold"]) == ("visits", ["hba1c"], 5)
    assert visits["report"]["k"] == 1 and visits["report"]["sensitive"][0]["distinct_l"] == 1
    browser = Browser(app)
    browser.login(world.owner)
    page = browser.get("/projects/alpha/report").text
    assert "Anonymity of the tables" in page and "no quasi-identifiers declared" in page
    for value in ("6.1", "7.4"):  # the QI's values appear nowhere
        assert value not in json.dumps(section)


def test_who_may_read_the_report(client, world) -> None:
    for who in ("owner", "auditor"):
        assert client.get(f"{API}/reports/gdpr", headers=world.h[who]).status_code == 200
    for who in ("scientist", "checker"):
        assert client.get(f"{API}/reports/gdpr", headers=world.h[who]).status_code == 403
    for who in ("outsider", "admin", "other_owner"):
        assert client.get(f"{API}/reports/gdpr", headers=world.h[who]).status_code == 404


def test_the_page_and_the_html_file_show_the_same_report(
    app, evidence, people, live_server, tmp_path
) -> None:
    browser = Browser(app)
    browser.login(evidence.owner)
    page = browser.get("/projects/alpha/report")
    assert page.status_code == 200
    for text in (
        "Compliance report (GDPR)",
        "intact",
        "alpha.scans",
        "deid_required",
        "ghost",
        "verdicts are shown once the request is decided",
    ):
        assert text in page.text, text
    assert "<style" not in page.text  # the site's stylesheet and CSP, no inline style
    scientist = Browser(app)
    scientist.login(evidence.scientist)
    assert scientist.get("/projects/alpha/report").status_code == 403
    target = tmp_path / "report.html"
    env = {"SANCTUM_URL": live_server.url, "SANCTUM_TOKEN": people.token(evidence.auditor, hours=1)}
    result = runner.invoke(cli_app, ["report", "gdpr", "alpha", "--html", str(target)], env=env)
    assert result.exit_code == 0, result.output
    assert "audit chain: intact" in result.stdout and f"written to {target}" in result.stdout.replace(
        "\n", ""
    )
    html = target.read_text()
    assert html.startswith("<!doctype html>") and "<style>" in html and "Compliance report (GDPR)" in html
    assert "alpha.scans" in html and "deid_required" in html and "/static/" not in html
    result = runner.invoke(cli_app, ["report", "gdpr", "alpha", "--json"], env=env)
    assert result.exit_code == 0 and json.loads(result.stdout)["project"]["name"] == "alpha"
    env["SANCTUM_TOKEN"] = people.token(evidence.scientist, hours=1)
    result = runner.invoke(cli_app, ["report", "gdpr", "alpha"], env=env)
    assert result.exit_code == 1 and "audit:read" in result.stderr
