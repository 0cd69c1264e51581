"""Import requests through the API: a scientist's file waits, encrypted, for an owner's decision."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import select

from airlock_helpers import SAFE_TABLE, events
from sanctum.airlock.models import ImportRequest
from sanctum.airlock.rules import ImportRules
from sanctum.datasets.fsck import cleanup_orphans
from sanctum.sdk import Client
from sanctum.sdk.errors import SanctumAPIError

API = "/api/v1/projects/alpha/imports"
CODES = b"code,label\nI21,acute myocardial infarction\nI10,essential hypertension\n"


@pytest.fixture
def sdk(client, world, people) -> dict[str, Client]:
    return {
        name: Client("http://testserver", people.token(getattr(world, name)), http=client)
        for name in ("owner", "scientist", "checker", "auditor", "outsider")
    }


def _file(tmp_path: Path, data: bytes = CODES, name: str = "icd10.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _held(runtime, number: int) -> ImportRequest:
    with runtime.db.session(write=False) as db:
        return db.scalar(select(ImportRequest).where(ImportRequest.number == number))


def test_an_approved_import_lands_as_a_version_with_its_provenance(sdk, runtime, client, world, tmp_path):
    asked = sdk["scientist"].request_import(
        "alpha", "reference", _file(tmp_path), justification="ICD-10 labels for the figures"
    )
    assert asked.state == "pending" and asked.size == len(CODES) and asked.version is None
    held = _held(runtime, asked.number)
    assert held.blob_id and runtime.store.exists(held.blob_id)
    assert CODES not in runtime.store.path(held.blob_id).read_bytes()  # encrypted while held
    # The owners look at it first (audited), then decide.
    inspected = client.get(f"{API}/{asked.number}/file", headers=world.h["owner"])
    assert inspected.status_code == 200 and inspected.content == CODES
    approved = sdk["owner"].approve_import("alpha", asked.number, "public reference data")
    assert (
        approved.state == "approved" and approved.decided_by == "owner@example.org" and approved.version == 1
    )
    assert approved.requested_by == "scientist@example.org" and approved.sha256 == asked.sha256
    assert not runtime.store.exists(held.blob_id)  # the held copy is gone
    (landed,) = sdk["owner"].list_files("alpha", "reference", 1)
    assert (landed.path, landed.sha256) == ("icd10.csv", asked.sha256)
    target = tmp_path / "back.csv"
    sdk["owner"].download_file("alpha", "reference", 1, "icd10.csv", target)
    assert target.read_bytes() == CODES
    (event,) = events(runtime, "import.approve")
    for expected in ("scientist@example.org", "icd10.csv", asked.sha256, "ICD-10 labels", "reference@1"):
        assert expected in event.details
    assert event.actor_email == "owner@example.org"
    assert [e.action for e in events(runtime, "import.")] == [
        "import.create", "import.upload", "import.inspect", "import.approve"
    ]  # fmt: skip
    # Scientists still cannot bring data in any other way.
    r = client.post("/api/v1/projects/alpha/datasets/reference/versions", headers=world.h["scientist"])
    assert r.status_code == 403 and "import request" in r.json()["error"]["message"]


def test_a_rejected_import_is_destroyed(sdk, runtime, tmp_path):
    large = b"x" * (3 * 1024 * 1024)  # past the JSON body limit: the upload streams like a dataset file
    asked = sdk["scientist"].request_import(
        "alpha", "reference", _file(tmp_path, large, "big.txt"), justification="labels"
    )
    assert asked.size == len(large)
    blob = _held(runtime, asked.number).blob_id
    with pytest.raises(SanctumAPIError) as err:
        sdk["owner"].reject_import("alpha", asked.number, " ")
    assert err.value.status == 422
    rejected = sdk["owner"].reject_import("alpha", asked.number, "use the licensed copy instead")
    assert rejected.state == "rejected" and rejected.state_reason == "use the licensed copy instead"
    held = _held(runtime, asked.number)
    assert held.blob_id is None and held.wrapped_key is None and not runtime.store.exists(blob)
    assert [d.name for d in sdk["owner"].list_datasets("alpha")] == []
    with pytest.raises(SanctumAPIError) as err:
        sdk["owner"].approve_import("alpha", asked.number)
    assert err.value.status == 409
    (event,) = events(runtime, "import.reject")
    assert '"from":"pending"' in event.details and "licensed copy" in event.details


def test_who_may_ask_decide_and_see(sdk, client, world, tmp_path):
    for who in ("checker", "auditor"):
        with pytest.raises(SanctumAPIError) as err:
            sdk[who].request_import("alpha", "reference", _file(tmp_path), justification="x")
        assert err.value.status == 403, who
    asked = sdk["scientist"].request_import("alpha", "reference", _file(tmp_path), justification="labels")
    url = f"{API}/{asked.number}"
    assert client.get(url, headers=world.h["checker"]).status_code == 404  # not theirs, not a decider
    assert client.get(url, headers=world.h["auditor"]).status_code == 200
    assert client.get(url, headers=world.h["outsider"]).status_code == 404
    assert client.get(url, headers=world.h["other_owner"]).status_code == 404
    for who in ("scientist", "checker", "auditor"):
        assert client.post(f"{url}/approve", json={}, headers=world.h[who]).status_code == 403, who
        assert client.get(f"{url}/file", headers=world.h[who]).status_code == 403, who
    # An owner's own request needs another owner.
    own = sdk["owner"].request_import("alpha", "reference", _file(tmp_path), justification="mine")
    with pytest.raises(SanctumAPIError) as err:
        sdk["owner"].approve_import("alpha", own.number)
    assert (err.value.status, err.value.code) == (403, "own_request")
    # Only the requester withdraws, and then the held bytes go.
    assert client.post(f"{url}/withdraw", json={}, headers=world.h["owner"]).status_code == 403
    assert sdk["scientist"].withdraw_import("alpha", asked.number).state == "withdrawn"


def test_bad_imports_are_refused_and_leave_nothing_behind(sdk, runtime, client, world, tmp_path, monkeypatch):
    dicom = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    with pytest.raises(SanctumAPIError) as err:
        sdk["scientist"].request_import(
            "alpha", "reference", _file(tmp_path, dicom, "scan.dcm"), justification="x"
        )
    assert err.value.code == "blocked_type" and "de-identification" in err.value.message
    with pytest.raises(SanctumAPIError) as err:  # renamed, still DICOM
        sdk["scientist"].request_import(
            "alpha", "reference", _file(tmp_path, dicom, "notes.txt"), justification="x"
        )
    assert err.value.code == "blocked_type"
    for bad in (
        {"dataset": "Bad Name", "filename": "a.csv", "justification": "x"},
        {"dataset": "ref", "filename": "../a.csv", "justification": "x"},
        {"dataset": "ref", "filename": "a.csv", "justification": " "},
    ):
        assert client.post(API, json=bad, headers=world.h["scientist"]).status_code == 422, bad
    # Too large for the project's import rules.
    monkeypatch.setattr("sanctum.api.routes.imports.import_rules", lambda *_: ImportRules(max_bytes=16))
    with pytest.raises(SanctumAPIError) as err:
        sdk["scientist"].request_import("alpha", "reference", _file(tmp_path), justification="x")
    assert err.value.status == 413
    monkeypatch.undo()
    # A body shorter than its Content-Length.
    created = client.post(
        API, json={"dataset": "ref", "filename": "a.csv", "justification": "x"}, headers=world.h["scientist"]
    ).json()
    r = client.put(f"{API}/{created['number']}/file", content=b"", headers=world.h["scientist"])
    assert r.status_code == 422
    # Nothing is held by any of these, and no blob was left in the store.
    with runtime.db.session(write=False) as db:
        assert db.scalars(select(ImportRequest.state)).all() == ["draft"] * 4
        assert db.scalars(select(ImportRequest.blob_id).where(ImportRequest.blob_id.is_not(None))).all() == []
    assert list(runtime.store.iter_blob_ids()) == []


def test_an_approval_that_fails_midway_keeps_the_request_pending(sdk, runtime, tmp_path):
    sdk["owner"].create_dataset("alpha", "reference", kind="table")
    asked = sdk["scientist"].request_import(
        "alpha", "reference", _file(tmp_path, b"a,b\n1,2,3\n", "broken.csv"), justification="x"
    )
    with pytest.raises(SanctumAPIError) as err:
        sdk["owner"].approve_import("alpha", asked.number)
    assert err.value.status == 422 and "field(s)" in err.value.message
    held = _held(runtime, asked.number)
    assert held.state == "pending" and runtime.store.exists(held.blob_id)
    assert sdk["owner"].list_versions("alpha", "reference") == []
    # The held blob survives start-up cleanup of unreferenced blobs, whatever its age.
    with runtime.db.session() as db:
        cleanup_orphans(db, runtime.store, min_age_s=0)
    assert runtime.store.exists(held.blob_id)
    # A table that parses lands as a table version.
    good = sdk["scientist"].request_import(
        "alpha", "reference", _file(tmp_path, SAFE_TABLE, "t.csv"), justification="x"
    )
    assert sdk["owner"].approve_import("alpha", good.number).version == 1
    assert sdk["owner"].list_files("alpha", "reference", 1)[0].path == "table.parquet"
