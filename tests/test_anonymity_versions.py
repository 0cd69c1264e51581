"""The anonymity report stored with every table version: computed at commit over the stored table,
shown on the dataset page to every member, served over REST, the SDK and the CLI, never a value.

The tables are built so that k and the other figures are known by hand; the DICOM metadata table's
figures are checked against an independent SQL count over the same table.
"""

from __future__ import annotations

import json

import duckdb
import pytest
import sqlalchemy as sa
from tests.test_web import Browser

from ingest_helpers import dicom_bytes, tar_body
from sanctum.datasets import anonymity
from sanctum.datasets.anonymity import VersionAnonymity
from sanctum.db.models import AuditEvent, Dataset, DatasetVersion
from test_cli_client import Cli, private_config  # noqa: F401 (autouse: no real ~/.config/sanctum)

API = "/api/v1/projects"
INGESTS = f"{API}/alpha/ingests"
MARKERS = ["ZQIMARK-AGE-7731", "ZQIMARK-SEX-4402", "ZDXMARK-9150", "ZPIDMARK-3318"]
# (30-39, F) x3 with flu, flu, cold; (40-49, M) x2 with flu, flu; one record unique on its markers.
ROWS = [
    ("p1", "30-39", "F", "flu"),
    ("p2", "30-39", "F", "flu"),
    ("p3", "30-39", "F", "cold"),
    ("p4", "40-49", "M", "flu"),
    ("p5", "40-49", "M", "flu"),
    (MARKERS[3], MARKERS[0], MARKERS[1], MARKERS[2]),
]
POLICY = {
    "patient_column": "patient_id",
    "columns": {
        "patient_id": {"action": "pseudonymise"},
        "age_band": {"action": "keep"},
        "sex": {"action": "keep"},
        "diagnosis": {"action": "keep"},
    },
    "quasi_identifiers": ["age_band", "sex"],
    "sensitive": ["diagnosis"],
    "k_threshold": 3,
}


def csv_of(rows) -> bytes:
    lines = ["patient_id,age_band,sex,diagnosis", *(",".join(r) for r in rows)]
    return ("\n".join(lines) + "\n").encode()


def ingest(client, h, dataset: str, files: dict[str, bytes], *, project="alpha", status=200, **body):
    r = client.post(f"{API}/{project}/ingests", json={"dataset": dataset, **body}, headers=h)
    assert r.status_code == 201, r.text
    number = r.json()["id"]
    r = client.post(f"{API}/{project}/ingests/{number}/batches", content=tar_body(files), headers=h)
    assert r.status_code == 200, r.text
    r = client.post(f"{API}/{project}/ingests/{number}/finish", headers=h)
    assert r.status_code == status, r.text
    return number, r.json()


def raw_upload(client, h, dataset: str, body: bytes, *, commit_status=200):
    """A table version through the plain dataset API (draft, PUT, commit); returns (number, reply)."""
    base = f"{API}/alpha/datasets/{dataset}/versions"
    number = client.post(base, headers=h).json()["number"]
    assert client.put(f"{base}/{number}/files/t.csv", content=body, headers=h).status_code == 201
    r = client.post(f"{base}/{number}/commit", headers=h)
    assert r.status_code == commit_status, r.text
    return number, r


def report_url(dataset: str, version: int, project="alpha") -> str:
    return f"{API}/{project}/datasets/{dataset}/versions/{version}/anonymity"


def stored_rows(runtime) -> list[VersionAnonymity]:
    with runtime.db.session(write=False) as db:
        return list(db.scalars(sa.select(VersionAnonymity)).all())


def events(runtime, action: str) -> list[AuditEvent]:
    with runtime.db.session(write=False) as db:
        return list(db.scalars(sa.select(AuditEvent).where(AuditEvent.action == action)).all())


def login(app, person) -> Browser:
    b = Browser(app)
    b.login(person)
    return b


@pytest.fixture
def visits(client, world) -> dict:
    """``visits`` v1: ingested under POLICY (QIs age_band, sex; sensitive diagnosis; k threshold 3)."""
    _, report = ingest(
        client, world.h["owner"], "visits", {"visits.csv": csv_of(ROWS)}, kind="table", policy=POLICY
    )
    assert report["version"] == 1
    return report


# --------------------------------------------------------------------------- computed at commit


def test_an_ingested_table_with_declared_qis_stores_its_report_with_the_right_k(
    client, world, runtime, visits
) -> None:
    h = world.h["owner"]
    r = client.get(report_url("visits", 1), headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["dataset"], body["version"], body["source"], body["unit"]) == (
        "visits",
        1,
        "policy",
        "record",
    )
    assert (body["quasi_identifiers"], body["sensitive"], body["k_threshold"]) == (
        ["age_band", "sex"],
        ["diagnosis"],
        3,
    )
    rep = body["report"]
    assert (rep["rows"], rep["k"], rep["equivalence_classes"]) == (6, 1, 3)
    assert (rep["records_in_small_classes"], rep["small_class_share"]) == (3, 0.5)
    assert rep["sensitive"] == [{"column": "diagnosis", "distinct_l": 1, "entropy_l": 1.0}]
    assert (rep["prosecutor_risk_max"], rep["prosecutor_risk_average"]) == (1.0, 0.5)
    assert rep["journalist_basis"] == "sample"
    (event,) = events(runtime, "dataset.version.anonymity")
    details = json.loads(event.details)
    assert event.target == "visits@1" and details["k"] == 1 and details["rows"] == 6

    # A raw upload into the same dataset is reported over the same declared columns: k = 2.
    number, _ = raw_upload(client, h, "visits", csv_of(ROWS[:5]))
    rep = client.get(report_url("visits", number), headers=h).json()["report"]
    assert (rep["rows"], rep["k"], rep["equivalence_classes"], rep["records_in_small_classes"]) == (
        5,
        2,
        2,
        2,
    )
    assert (rep["prosecutor_risk_max"], rep["prosecutor_risk_average"]) == (0.5, 0.4)
    assert len(stored_rows(runtime)) == 2


def test_a_table_without_declared_qis_gets_no_report(app, client, world, runtime) -> None:
    h = world.h["owner"]
    assert (
        client.post(f"{API}/alpha/datasets", json={"name": "plain", "kind": "table"}, headers=h).status_code
        == 201
    )
    raw_upload(client, h, "plain", csv_of(ROWS))
    no_qis = {k: v for k, v in POLICY.items() if k not in ("quasi_identifiers", "sensitive", "k_threshold")}
    ingest(client, h, "declared-none", {"v.csv": csv_of(ROWS)}, kind="table", policy=no_qis)
    assert stored_rows(runtime) == []
    for dataset in ("plain", "declared-none"):
        r = client.get(report_url(dataset, 1), headers=world.h["scientist"])
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_anonymity_report"
    page = login(app, world.scientist).get("/projects/alpha/datasets/plain")
    assert (
        "No quasi-identifiers are declared for this table" in page.text
        and "anonymity-summary" not in page.text
    )
    # a files dataset has no report either, and a version that does not exist is not found
    assert client.post(f"{API}/alpha/datasets", json={"name": "scans"}, headers=h).status_code == 201
    assert client.get(report_url("scans", 1), headers=h).json()["error"]["code"] == "not_found"
    assert client.get(report_url("plain", 9), headers=h).json()["error"]["message"] == "version not found"
    # a k_threshold without QIs is refused with the policy
    bad = client.post(
        INGESTS, json={"dataset": "x", "kind": "table", "policy": {**no_qis, "k_threshold": 3}}, headers=h
    )
    assert bad.status_code == 422 and "k_threshold" in bad.json()["error"]["message"]


def test_a_dicom_ingest_stores_the_metadata_tables_report_per_patient(client, world, runtime) -> None:
    h = world.h["owner"]
    files = {f"p{p}/i{i}.dcm": dicom_bytes(p, i)[0] for p in range(3) for i in range(2)}
    files["p9/mr.dcm"] = dicom_bytes(9, 0, sample="MR_small.dcm")[0]
    _, report = ingest(client, h, "scans", files)
    assert report["metadata_table"] == {"dataset": "scans-metadata", "version": 1, "rows": 7}
    body = client.get(report_url("scans-metadata", 1), headers=world.h["auditor"]).json()
    assert (body["source"], body["unit"], body["k_threshold"]) == ("dicom_metadata", "patient", 5)
    assert body["quasi_identifiers"] == ["modality", "body_part", "manufacturer", "study_year"]
    rep = body["report"]
    # Independently: distinct patients per combination, by SQL over the same table.
    sql = (
        "select count(distinct patient_id) from scans_metadata "
        "group by modality, body_part, manufacturer, year(study_date)"
    )
    r = client.post(f"{API}/alpha/query", json={"sql": sql}, headers=h)
    sizes = sorted(row[0] for row in r.json()["rows"])
    assert rep["rows"] == 4 == sum(sizes)  # 7 images of 4 patients: one record per patient
    assert rep["k"] == sizes[0] and rep["equivalence_classes"] == len(sizes)
    assert rep["records_in_small_classes"] == sum(s for s in sizes if s < 5) == 4

    # the next ingest's metadata version carries its own report over the accumulated table
    ingest(client, h, "scans", {"p5/a.dcm": dicom_bytes(5, 0)[0]})
    assert client.get(report_url("scans-metadata", 2), headers=h).json()["report"]["rows"] == 5


def test_metadata_records_count_patients_not_images() -> None:
    """Unit level: the metadata table becomes one record per patient and QI combination."""
    import datetime as dt

    import pyarrow as pa

    from sanctum.ingest.metadata import SCHEMA

    def row(patient, study, path, modality, year):
        return {
            "dataset_version": 1,
            "path": path,
            "patient_id": patient,
            "study_uid": study,
            "modality": modality,
            "study_date": dt.date(year, 6, 1),
            "body_part": "HEAD",
            "manufacturer": "ACME",
        }

    table = pa.Table.from_pylist(
        [
            *(row("A", "s1", f"a{i}", "CT", 2020) for i in range(200)),  # one 200-slice CT
            row("A", "s2", "a-mr", "MR", 2020),  # the same patient's MR: a second combination
            row("B", "s3", "b", "CT", 2020),
            row(None, "s4", "c1", "CT", 2021),  # no patient pseudonym: stands for its study
            row(None, "s4", "c2", "CT", 2021),
            row(None, None, "d", "CT", 2021),  # neither: stands for itself
        ],
        schema=SCHEMA,
    )
    records = anonymity.metadata_records(table)
    assert records.column_names == ["modality", "body_part", "manufacturer", "study_year"]
    assert sorted(records.to_pylist(), key=str) == sorted(
        [
            {"modality": "CT", "body_part": "HEAD", "manufacturer": "ACME", "study_year": 2020},
            {"modality": "MR", "body_part": "HEAD", "manufacturer": "ACME", "study_year": 2020},
            {"modality": "CT", "body_part": "HEAD", "manufacturer": "ACME", "study_year": 2020},
            {"modality": "CT", "body_part": "HEAD", "manufacturer": "ACME", "study_year": 2021},
            {"modality": "CT", "body_part": "HEAD", "manufacturer": "ACME", "study_year": 2021},
        ],
        key=str,
    )


# --------------------------------------------------------------------------- who sees it


def test_the_dataset_page_shows_k_to_every_role_and_the_full_report(app, world, visits) -> None:
    for person in (world.owner, world.scientist, world.checker, world.auditor):
        b = login(app, person)
        page = b.get("/projects/alpha/datasets/visits")
        assert page.status_code == 200
        summary = page.text[page.text.index('id="anonymity-summary"') :]
        assert "<dt>k</dt><dd>1</dd>" in summary
        assert "<dt>In classes smaller than 3</dt><dd>3 of 6 (50.0 %)</dd>" in summary
        assert "l-diversity of diagnosis</dt><dd>distinct 1, entropy 1.00" in summary
        assert "not estimated without a population table" in summary
        full = b.get("/projects/alpha/datasets/visits/versions/1/anonymity")
        assert full.status_code == 200 and "<dt>k (smallest class)</dt><dd>1</dd>" in full.text
        assert "Class sizes" in full.text
        for marker in MARKERS:
            assert marker not in page.text and marker not in full.text
    outsider = login(app, world.other_owner)
    assert outsider.get("/projects/alpha/datasets/visits").status_code == 404
    assert outsider.get("/projects/alpha/datasets/visits/versions/1/anonymity").status_code == 404


def test_the_owners_page_shows_the_stored_report_unless_other_columns_are_chosen(
    app, world, runtime, visits
) -> None:
    owner = login(app, world.owner)
    page = owner.get("/projects/alpha/datasets/visits/anonymity")
    assert 'id="anonymity-stored"' in page.text and "<dt>k (smallest class)</dt><dd>1</dd>" in page.text
    same = {"qi": ["age_band", "sex"], "sensitive": ["diagnosis"], "k": "3"}
    assert 'id="anonymity-stored"' in owner.get("/projects/alpha/datasets/visits/anonymity", params=same).text
    assert events(runtime, "dataset.anonymity_report") == []  # nothing was decrypted
    other = owner.get("/projects/alpha/datasets/visits/anonymity", params={"qi": ["sex"], "k": "3"})
    assert (
        'id="anonymity-stored"' not in other.text and "<dt>Quasi-identifiers</dt><dd>sex</dd>" in other.text
    )
    assert len(events(runtime, "dataset.anonymity_report")) == 1


def test_the_api_follows_the_role_table_and_the_tenant_boundary(client, world, visits) -> None:
    for name in ("owner", "scientist", "checker", "auditor"):
        r = client.get(report_url("visits", 1), headers=world.h[name])
        assert r.status_code == 200 and r.json()["report"]["k"] == 1, name
    for name in ("outsider", "admin", "other_owner"):
        r = client.get(report_url("visits", 1), headers=world.h[name])
        assert r.status_code == 404 and r.json()["error"]["message"] == "project not found", name
    # another project's dataset: not found from alpha, even by its name, until it is shared
    hb = world.h["other_owner"]
    ingest(client, hb, "cohort", {"c.csv": csv_of(ROWS[:5])}, project="beta", kind="table", policy=POLICY)
    assert client.get(report_url("cohort", 1, "beta"), headers=hb).json()["report"]["k"] == 2
    r = client.get(report_url("cohort", 1), headers=world.h["owner"])
    assert r.status_code == 404 and r.json()["error"]["message"] == "dataset not found"
    assert client.get(report_url("beta.cohort", 1), headers=world.h["owner"]).status_code == 404
    share = client.post(f"{API}/beta/datasets/cohort/shares", json={"project": "alpha"}, headers=hb).json()
    assert (
        client.post(f"{API}/alpha/shares/{share['id']}/accept", headers=world.h["owner"]).status_code == 200
    )
    r = client.get(report_url("beta.cohort", 1), headers=world.h["scientist"])
    assert r.status_code == 200 and r.json()["report"]["k"] == 2 and r.json()["dataset"] == "beta.cohort"


def test_no_value_of_the_table_is_stored_served_or_audited(client, world, runtime, visits) -> None:
    (row,) = stored_rows(runtime)
    stored = json.dumps([row.report, row.quasi_identifiers, row.sensitive])
    served = client.get(report_url("visits", 1), headers=world.h["scientist"]).text
    audited = repr([(e.target, e.details) for e in events(runtime, "dataset.version.anonymity")])
    for marker in MARKERS:
        assert marker not in stored and marker not in served and marker not in audited, marker
    assert "ZQIMARK" not in served and "flu" not in stored and "30-39" not in stored


# --------------------------------------------------------------------------- fail closed


def test_a_table_missing_a_declared_qi_is_not_committed(client, world, runtime, visits) -> None:
    h = world.h["owner"]
    lacking = b"patient_id,sex,diagnosis\np1,F,flu\n"
    number, r = raw_upload(client, h, "visits", lacking, commit_status=422)
    error = r.json()["error"]
    assert error["code"] == "anonymity_report_failed" and "'age_band'" in error["message"]
    versions = client.get(f"{API}/alpha/datasets/visits/versions?drafts=true", headers=h).json()
    assert [(v["number"], v["state"]) for v in versions] == [(1, "committed"), (number, "draft")]
    assert len(stored_rows(runtime)) == 1 and len(events(runtime, "dataset.version.commit")) == 1
    assert client.delete(f"{API}/alpha/datasets/visits/versions/{number}", headers=h).status_code == 204


def test_an_engine_failure_refuses_the_commit_and_a_retry_succeeds(
    client, world, runtime, monkeypatch
) -> None:
    """The ingest's finish fails whole (no version, no report, the session stays open); the
    engine's message, which could quote a cell, is neither shown nor audited."""
    from sanctum.deid import metrics

    h = world.h["owner"]
    r = client.post(INGESTS, json={"dataset": "visits", "kind": "table", "policy": POLICY}, headers=h)
    number = r.json()["id"]
    client.post(f"{INGESTS}/{number}/batches", content=tar_body({"v.csv": csv_of(ROWS)}), headers=h)

    def out_of_memory(*args, **kwargs):
        raise duckdb.OutOfMemoryException(f"could not allocate for value {MARKERS[0]}")

    monkeypatch.setattr(metrics, "_aggregate", out_of_memory)
    r = client.post(f"{INGESTS}/{number}/finish", headers=h)
    assert r.status_code == 500 and r.json()["error"]["code"] == "anonymity_report_failed"
    assert "OutOfMemoryException" in r.text and MARKERS[0] not in r.text
    assert client.get(f"{INGESTS}/{number}", headers=h).json()["state"] == "open"
    assert client.get(f"{API}/alpha/datasets/visits/versions", headers=h).json() == []
    assert stored_rows(runtime) == []
    monkeypatch.undo()
    r = client.post(f"{INGESTS}/{number}/finish", headers=h)
    assert r.status_code == 200 and r.json()["version"] == 1
    assert client.get(report_url("visits", 1), headers=h).json()["report"]["k"] == 1


def test_a_crash_after_the_report_is_written_leaves_neither_version_nor_report(
    client, world, runtime, visits, monkeypatch
) -> None:
    """The report row and the commit are one transaction: a failure after the row is written (here
    while auditing the report) rolls both back."""
    h = world.h["owner"]
    real = anonymity.record

    def then_crash(*args, **kwargs):
        real(*args, **kwargs)
        raise OSError("the server was killed")

    monkeypatch.setattr(anonymity, "record", then_crash)
    base = f"{API}/alpha/datasets/visits/versions"
    number = client.post(base, headers=h).json()["number"]
    assert client.put(f"{base}/{number}/files/t.csv", content=csv_of(ROWS[:5]), headers=h).status_code == 201
    with pytest.raises(OSError):
        client.post(f"{base}/{number}/commit", headers=h)
    with runtime.db.session(write=False) as db:
        state = db.scalar(
            sa.select(DatasetVersion.state)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(Dataset.name == "visits", DatasetVersion.number == number)
        )
    assert state == "draft" and len(stored_rows(runtime)) == 1
    monkeypatch.undo()
    assert client.post(f"{base}/{number}/commit", headers=h).status_code == 200
    assert client.get(report_url("visits", number), headers=h).json()["report"]["k"] == 2


# --------------------------------------------------------------------------- SDK and CLI


def test_the_sdk_and_the_cli_read_the_stored_report(client, world, people, live_server, visits) -> None:
    from sanctum.sdk import Client, SanctumAPIError

    cli = Cli(world, people, live_server.url)
    with Client(live_server.url, cli.token("scientist")) as sdk:
        found = sdk.anonymity_report("alpha", "visits", 1)
        assert found.report.k == 1 and found.report.sensitive[0].distinct_l == 1
        with pytest.raises(SanctumAPIError) as missing:
            sdk.anonymity_report("alpha", "visits", 7)
        assert missing.value.status == 404
    assert cli.json("scientist", "dataset", "anonymity", "alpha", "visits@1")["report"]["k"] == 1
    text = cli.ok("auditor", "dataset", "anonymity", "alpha", "visits")  # the latest version
    assert "k: 1" in text and "records in classes smaller than 3: 3 (50.0%)" in text
    assert "l-diversity of diagnosis: distinct 1, entropy 1.00" in text
    bad = cli("owner", "dataset", "anonymity", "alpha", "visits@x")
    assert bad.exit_code == 1 and "DATASET@VERSION" in bad.stderr
