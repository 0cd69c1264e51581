"""The DMP through the API, the pages and the CLI: versions, history, audit, who may do what, and
refusals that store nothing (an invalid plan, a retention date already passed)."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import rfc8785
from sqlalchemy import func, select
from typer.testing import CliRunner

from dmp_helpers import changed, dataset, days, plan, put
from sanctum.cli.main import app as cli_app
from sanctum.db.models import AuditEvent
from sanctum.dmp.models import DmpVersion
from test_web import Browser, csrf_of

runner = CliRunner()
CLINICAL = dataset("clinical", personal="yes", access="closed", until="2031-06-30", location="NL")


def dmp_events(runtime, outcome: str | None = None) -> list[AuditEvent]:
    with runtime.db.session(write=False) as db:
        query = select(AuditEvent).where(AuditEvent.action == "dmp.set")
        if outcome:
            query = query.where(AuditEvent.outcome == outcome)
        return list(db.scalars(query.order_by(AuditEvent.seq)))


def stored(runtime) -> int:
    with runtime.db.session(write=False) as db:
        return db.scalar(select(func.count()).select_from(DmpVersion)) or 0


def make_dataset(client, h, name: str, kind: str = "files", project: str = "alpha") -> None:
    r = client.post(f"/api/v1/projects/{project}/datasets", json={"name": name, "kind": kind}, headers=h)
    assert r.status_code == 201, r.text


def test_versions_history_and_audit(client, world, runtime) -> None:
    h = world.h["owner"]
    make_dataset(client, h, "clinical")
    assert client.get("/api/v1/projects/alpha/dmp", headers=h).json()["error"]["code"] == "no_dmp"
    first = plan(CLINICAL)
    r = put(client, h, first)
    assert r.status_code == 201, r.text
    one = r.json()
    assert one["number"] == 1 and one["standard"] == "1.2" and one["set_by"] == "owner@example.org"
    assert one["sha256"] == hashlib.sha256(rfc8785.dumps(first)).hexdigest()
    second = plan(CLINICAL, dataset("scans"), version="1.1", controls={"reviewers": 1})
    r = put(client, h, second, standard="1.1")
    assert r.status_code == 201 and r.json()["number"] == 2 and r.json()["standard"] == "1.1"
    # Every member reads the version in force, with what it means for each dataset.
    current = client.get("/api/v1/projects/alpha/dmp", headers=world.h["scientist"]).json()
    assert current["number"] == 2 and current["in_force"] and current["document"] == second
    (rules,) = current["summary"]["datasets"]
    assert rules["name"] == "clinical" and rules["deidentification_required"] and rules["locations"] == ["NL"]
    assert current["summary"]["described_but_absent"] == ["scans"]
    assert current["summary"]["controls"] == {"reviewers": 1}
    history = client.get("/api/v1/projects/alpha/dmp/history", headers=world.h["auditor"]).json()
    assert [v["number"] for v in history] == [2, 1] and all(
        v["set_by"] == "owner@example.org" for v in history
    )
    old = client.get("/api/v1/projects/alpha/dmp/history/1", headers=world.h["checker"]).json()
    assert old["document"] == first and not old["in_force"]
    assert client.get("/api/v1/projects/alpha/dmp/history/9", headers=h).status_code == 404
    events = dmp_events(runtime, "ok")
    assert [json.loads(e.details)["version"] for e in events] == [1, 2]
    assert json.loads(events[0].details)["datasets_governed"] == ["clinical"]
    assert events[0].actor_email == "owner@example.org" and events[0].project_name == "alpha"


def test_an_invalid_plan_is_refused_with_every_problem_and_nothing_is_stored(client, world, runtime) -> None:
    h = world.h["owner"]
    assert put(client, h, plan(CLINICAL)).status_code == 201
    broken = changed(plan(CLINICAL), "dmp.dataset.0.personal_data", "perhaps")
    broken = changed(broken, "dmp.contact", ...)
    r = put(client, h, broken)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "dmp_invalid" and error["standard"] == "1.2"
    paths = {e["path"] for e in error["errors"]}
    assert paths == {"dmp.contact", "dmp.dataset[0].personal_data"}
    assert "dmp.contact: Field required" in error["message"]
    r = put(client, h, plan(CLINICAL, controls={"reviewers": 5}))
    assert (
        r.status_code == 422
        and r.json()["error"]["errors"][0]["path"] == "dmp.extension[1].sanctum.reviewers"
    )
    assert stored(runtime) == 1
    assert client.get("/api/v1/projects/alpha/dmp", headers=h).json()["number"] == 1
    denied = dmp_events(runtime, "denied")
    assert len(denied) == 2 and json.loads(denied[0].details)["code"] == "dmp_invalid"
    assert "dmp.contact: Field required" in json.loads(denied[0].details)["problems"]
    # A body that is not even an object: the API's own 422, nothing stored.
    r = client.put("/api/v1/projects/alpha/dmp", json={"document": [1]}, headers=h)
    assert r.status_code == 422 and stored(runtime) == 1


def test_who_may_read_and_set_the_plan(client, world) -> None:
    document = plan(CLINICAL)
    for who, status in (
        ("scientist", 403),
        ("checker", 403),
        ("auditor", 403),
        ("outsider", 404),
        ("admin", 404),
        ("other_owner", 404),
    ):
        assert put(client, world.h[who], document).status_code == status, who
    assert put(client, world.h["owner"], document).status_code == 201
    for path in ("", "/history", "/history/1", "/status"):
        for who in ("owner", "scientist", "checker", "auditor"):
            assert client.get(f"/api/v1/projects/alpha/dmp{path}", headers=world.h[who]).status_code == 200
        for who in ("outsider", "admin", "other_owner"):
            assert client.get(f"/api/v1/projects/alpha/dmp{path}", headers=world.h[who]).status_code == 404
    # A token without dmp:manage cannot set it, even for an owner.
    reader = {"Authorization": f"Bearer {world_token(world, client)}"}
    r = put(client, reader, document)
    assert r.status_code == 403 and r.json()["error"]["code"] == "scope"


def world_token(world, client) -> str:
    r = client.post(
        "/api/v1/tokens", json={"name": "read only", "scopes": ["read"]}, headers=world.h["owner"]
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_a_retention_date_already_past_needs_confirmation(client, world, runtime) -> None:
    h = world.h["owner"]
    make_dataset(client, h, "clinical")
    expired = plan(dataset("clinical", personal="yes", until=days(-1)), dataset("gone", until=days(-10)))
    r = put(client, h, expired)
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "retention_passed" and "clinical" in error["message"]
    assert "gone" not in error["message"]  # no live dataset of that name: nothing would be erased
    assert "confirm_shred" in error["message"] and stored(runtime) == 0
    assert json.loads(dmp_events(runtime, "denied")[0].details)["code"] == "retention_passed"
    r = put(client, h, expired, confirm_shred=True)
    assert (
        r.status_code == 201 and r.json()["shred_at_next_run"] == ["clinical"] and r.json()["confirm_shred"]
    )
    status = client.get("/api/v1/projects/alpha/dmp/status", headers=world.h["scientist"]).json()
    assert [i["dataset"] for i in status["overdue"]] == ["clinical"] and status["overdue"][0][
        "days_left"
    ] == -1
    # A date within 30 days is not refused: it is listed as expiring.
    r = put(client, h, plan(dataset("clinical", until=days(12))))
    assert r.status_code == 201
    status = client.get("/api/v1/projects/alpha/dmp/status", headers=h).json()
    assert status["overdue"] == [] and [(i["dataset"], i["days_left"]) for i in status["expiring_soon"]] == [
        ("clinical", 12)
    ]


# --------------------------------------------------------------------------- pages


@pytest.fixture
def browser(app):
    def login(person) -> Browser:
        b = Browser(app)
        b.login(person)
        return b

    return login


def test_pages_show_the_plan_and_owners_upload_a_new_version(client, world, runtime, browser) -> None:
    make_dataset(client, world.h["owner"], "clinical")
    scientist = browser(world.scientist)
    page = scientist.get("/projects/alpha/dmp")
    assert page.status_code == 200 and "no data management plan" in page.text
    assert 'name="file"' not in page.text  # no upload form for a scientist
    owner = browser(world.owner)
    token = csrf_of(owner.get("/projects/alpha/dmp").text)
    body = json.dumps(plan(CLINICAL, controls={"reviewers": 1, "allowed_locations": ["NL"]})).encode()
    r = owner.http.post(
        "/projects/alpha/dmp", data={"csrf": token}, files={"file": ("dmp.json", body, "application/json")}
    )
    assert r.status_code == 303 and r.headers["location"].endswith("done=dmp_set")
    page = scientist.get("/projects/alpha/dmp")
    assert "Version 1 in force" in page.text and "data only through de-identifying ingest" in page.text
    assert "no sharing with other projects" in page.text and "2031-06-30" in page.text
    assert "Independent approvals per export: 1" in page.text
    version = scientist.get("/projects/alpha/dmp/versions/1")
    assert version.status_code == 200 and "dana.steward@example.org" in version.text
    # Pasted JSON with problems: the page lists each one with its path; nothing stored.
    bad = json.dumps(changed(plan(CLINICAL), "dmp.language", "klingon"))
    r = owner.form("/projects/alpha/dmp", {"document": bad})
    assert r.status_code == 422 and "dmp.language" in r.text and "ISO 639-3" in r.text
    r = owner.form("/projects/alpha/dmp", {"document": "{not json"})
    assert r.status_code == 422 and "not valid JSON" in r.text
    assert stored(runtime) == 1 and len(dmp_events(runtime, "denied")) == 2
    # A past retention date: the page asks for the confirmation, and takes it.
    past = json.dumps(plan(dataset("clinical", until=days(-3))))
    r = owner.form("/projects/alpha/dmp", {"document": past})
    assert r.status_code == 409 and 'name="confirm_shred"' in r.text
    r = owner.form("/projects/alpha/dmp", {"document": past, "confirm_shred": "true"})
    assert r.status_code == 303 and stored(runtime) == 2
    assert "Shredded at the next lifecycle run" in owner.get("/projects/alpha/dmp").text
    # Without the session's CSRF token, nothing happens.
    r = owner.post("/projects/alpha/dmp", {"document": past, "csrf": "forged"})
    assert r.status_code == 403 and stored(runtime) == 2
    # Another project's plan page does not exist for a non-member.
    assert browser(world.outsider).get("/projects/alpha/dmp").status_code == 404
    assert (
        scientist.post("/projects/alpha/dmp", {"csrf": csrf_of(page.text), "document": past}).status_code
        == 403
    )


# --------------------------------------------------------------------------- CLI


def test_cli_validate_is_offline_and_set_show_use_the_server(
    tmp_path, client, world, people, live_server
) -> None:
    good = tmp_path / "dmp.json"
    good.write_text(json.dumps(plan(CLINICAL, controls={"min_cell_count": 5})))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(changed(plan(CLINICAL), "dmp.dataset.0.sensitive_data", "no idea")))
    offline = {"SANCTUM_URL": None, "SANCTUM_TOKEN": None}
    result = runner.invoke(cli_app, ["dmp", "validate", str(good), "--json"], env=offline)
    assert result.exit_code == 0, result.output
    checked = json.loads(result.stdout)  # madmpy's import banner does not spoil the JSON
    assert (
        checked["valid"]
        and checked["standard"] == "1.2"
        and checked["summary"]["controls"] == {"min_cell_count": 5}
    )
    result = runner.invoke(cli_app, ["dmp", "validate", str(bad)], env=offline)
    assert result.exit_code == 1 and "dmp.dataset[0].sensitive_data" in result.stdout
    result = runner.invoke(cli_app, ["dmp", "validate", str(tmp_path / "missing.json")], env=offline)
    assert result.exit_code == 1 and "cannot read" in result.stderr

    env = {"SANCTUM_URL": live_server.url, "SANCTUM_TOKEN": people.token(world.owner, hours=1)}
    result = runner.invoke(cli_app, ["dmp", "set", "alpha", str(bad)], env=env)
    assert result.exit_code == 1 and "sensitive_data" in result.stdout  # refused before sending
    result = runner.invoke(cli_app, ["dmp", "set", "alpha", str(good), "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["number"] == 1
    result = runner.invoke(cli_app, ["dmp", "show", "alpha"], env={**env, "COLUMNS": "200"})
    assert result.exit_code == 0 and "DMP version 1 of alpha (in force)" in result.stdout
    assert "min_cell_count=5" in result.stdout
    shown = json.loads(runner.invoke(cli_app, ["dmp", "show", "alpha", "--json"], env=env).stdout)
    assert shown["sha256"] == checked["sha256"] and shown["status"]["version"] == 1
    history = runner.invoke(cli_app, ["dmp", "history", "alpha", "--json"], env=env)
    assert [v["number"] for v in json.loads(history.stdout)] == [1]
    scientist = {**env, "SANCTUM_TOKEN": people.token(world.scientist, hours=1)}
    result = runner.invoke(cli_app, ["dmp", "set", "alpha", str(good)], env=scientist)
    assert result.exit_code == 1 and re.search(r"error: .*dmp:manage", result.stderr)
