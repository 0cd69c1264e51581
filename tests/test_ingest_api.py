"""The ingest API against a real catalog (SQLite and PostgreSQL), blob store and worker pool.

Proves what a data owner relies on: DICOM, EDF and CSV come out de-identified (every stored byte
is searched for the planted identifiers), the DICOM metadata table answers SQL, the report holds
counts and reasons but no values, a source is never stored twice, bad files are per-file errors,
a failure in the middle of a batch stores nothing, and only data owners reach any of it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.data import get_testdata_file

from ingest_helpers import (
    CSV_MARKERS,
    CSV_TEXT,
    POLICY,
    dicom_bytes,
    edf_bytes,
    patient_markers,
    plaintexts,
    tar_body,
)
from sanctum.datasets.fsck import check
from sanctum.db.models import AuditEvent, Dataset, DatasetVersion, Project, VersionFile
from sanctum.deid.pseudonyms import Pseudonymiser
from sanctum.ingest import keys
from sanctum.ingest.models import IngestSession, IngestSource
from sanctum.store import LocalBlobStore, StoreError

BASE = "/api/v1/projects/alpha/ingests"


def start(client, h, dataset="scans", **body):
    r = client.post(BASE, json={"dataset": dataset, **body}, headers=h)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def batch(client, h, number, files, *, status=200):
    body = files if isinstance(files, bytes) else tar_body(files)
    r = client.post(f"{BASE}/{number}/batches", content=body, headers=h)
    assert r.status_code == status, r.text
    return r.json()


def outcomes(result):
    return {o["path"]: (o["outcome"], o["reasons"]) for o in result["outcomes"]}


def all_blobs(runtime):
    """Every blob the catalog references (versions and quarantine), with the key that opens it."""
    with runtime.db.session(write=False) as db:
        rows = db.execute(
            sa.select(VersionFile.blob_id, Dataset)
            .join(DatasetVersion, DatasetVersion.id == VersionFile.version_id)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        ).all()
        quarantined = db.execute(
            sa.select(IngestSource.blob_id, Dataset)
            .join(IngestSession, IngestSession.id == IngestSource.session_id)
            .join(Dataset, Dataset.id == IngestSession.dataset_id)
            .where(IngestSource.blob_id.is_not(None))
        ).all()
        return [(b, runtime.keyring.dataset_key(db, d)) for b, d in [*rows, *quarantined]]


def catalog_text(runtime) -> str:
    """Everything an ingest writes to the catalog in plaintext, as one string."""
    with runtime.db.session(write=False) as db:
        parts = [
            *db.scalars(sa.select(VersionFile.path)).all(),
            *db.scalars(sa.select(IngestSource.reason)).all(),
            *[p or "" for p in db.scalars(sa.select(IngestSource.stored_path)).all()],
            *[f"{e.target} {e.details}" for e in db.scalars(sa.select(AuditEvent)).all()],
            *[
                json.dumps(s.counts) + json.dumps(s.actions)
                for s in db.scalars(sa.select(IngestSession)).all()
            ],
        ]
    return "\n".join(parts)


def secret(runtime) -> bytes:
    with runtime.db.session(write=False) as db:
        project = db.scalar(sa.select(Project).where(Project.name == "alpha"))
        return keys.pseudonym_secret(db, runtime.keyring, project)


def test_dicom_edf_and_tables_come_out_de_identified_with_a_queryable_metadata_table(
    client, world, runtime, tmp_path
) -> None:
    h = world.h["owner"]
    number = start(client, h, policy=POLICY)
    markers: list[str] = [*CSV_MARKERS]
    files = {}
    for p in range(2):
        for i in range(3):
            data, planted = dicom_bytes(p, i)
            folder = patient_markers(p)["PatientName"].replace("^", "_")  # named after the patient
            files[f"{folder}/CT/IMG{i:04}.dcm"] = data
            markers += planted
    edf, planted = edf_bytes(tmp_path)
    markers += planted
    files["Zebulon_Quux9/sleep/night.edf"] = edf
    files["clinical/visits.csv"] = CSV_TEXT.encode()
    files["misc/us.dcm"] = open(get_testdata_file("examples_ybr_color.dcm"), "rb").read()  # noqa: SIM115
    files["misc/notes.txt"] = b"nothing to see here\n"
    result = batch(client, h, number, files)
    seen = outcomes(result)
    assert {p: o for p, (o, _) in seen.items()} == {
        **{p: "stored" for p in files if p.endswith((".dcm", ".edf", ".csv"))},
        "misc/us.dcm": "quarantined",
        "misc/notes.txt": "error",
    }
    assert "ultrasound" in seen["misc/us.dcm"][1][0]
    report = client.post(f"{BASE}/{number}/finish", headers=h).json()
    assert report["state"] == "finished" and report["version"] == 1
    assert {
        k: report["counts"][k] for k in ("files", "stored", "quarantined", "error", "dicom", "edf", "table")
    } == {
        "files": 10,
        "stored": 8,
        "quarantined": 1,
        "error": 1,
        "dicom": 7,
        "edf": 1,
        "table": 1,
    }
    # counted over every DICOM de-identified: the six stored and the quarantined one
    assert report["attributes"]["dicom:PatientName:Z"] == 7 and report["actions"]["dicom:P"] == 7
    assert report["attributes"]["table:name:drop"] == 2 and report["table_edition"] == "2026c"
    assert report["metadata_table"] == {"dataset": "scans-metadata", "version": 1, "rows": 6}
    assert [q["path"] for q in report["quarantined"]] == ["misc/us.dcm"]
    assert report["errors"][0]["path"] == "misc/notes.txt"

    listing = client.get("/api/v1/projects/alpha/datasets/scans/versions/1/files", headers=h).json()
    stored = sorted(f["path"] for f in listing)
    assert len(stored) == 8 and all(p.startswith(("dicom/P", "edf/P", "tables/")) for p in stored)
    assert "tables/clinical/visits.parquet" in stored

    # the metadata table, queried by a data scientist like any other table
    sql = (
        "select patient_id, modality, image_rows, frames, study_date, manufacturer "
        "from scans_metadata order by 1"
    )
    r = client.post("/api/v1/projects/alpha/query", json={"sql": sql}, headers=world.h["scientist"])
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    p = Pseudonymiser(secret(runtime))
    first = p.patient_id("MRNZ884420")
    shifted = dt.date(2021, 3, 14) + dt.timedelta(days=p.date_offset_days(first))
    assert sorted({row[0] for row in rows}) == sorted({first, p.patient_id("MRNZ884421")})
    assert [first, "CT", 128, 1, shifted.isoformat(), "GE MEDICAL SYSTEMS"] in rows

    # privacy: no planted identifier in any stored byte, the catalog, the audit trail or the report
    texts = plaintexts(runtime, all_blobs(runtime))
    assert len({b for b, _ in texts}) == 10  # 8 files, the quarantined output, the metadata table
    for marker in markers:
        for blob_id, text in texts:
            assert marker.encode() not in text, (marker, blob_id)
        assert marker not in catalog_text(runtime), marker
        assert marker not in json.dumps(report), marker
    assert "Zebulon" not in " ".join(stored)
    with runtime.db.session(write=False) as db:
        assert check(db, runtime.store, runtime.keyring, deep=True).ok  # the quarantined blob is referenced


def test_only_data_owners_reach_ingest_and_other_projects_see_nothing(client, world) -> None:
    r = client.post(BASE, json={"dataset": "scans"}, headers=world.h["scientist"])
    assert r.status_code == 403 and "airlock" in r.json()["error"]["message"]
    for name in ("checker", "auditor"):
        assert client.post(BASE, json={"dataset": "scans"}, headers=world.h[name]).status_code == 403
    for name in ("outsider", "admin", "other_owner"):
        assert client.post(BASE, json={"dataset": "scans"}, headers=world.h[name]).status_code == 404
    number = start(client, world.h["owner"])
    for path in (f"{BASE}/{number}", f"{BASE}/{number}/report"):
        assert client.get(path, headers=world.h["scientist"]).status_code == 403
        assert client.get(path, headers=world.h["other_owner"]).status_code == 404
    r = client.post(
        f"{BASE}/{number}/batches", content=tar_body({"a.dcm": b"x"}), headers=world.h["scientist"]
    )
    assert r.status_code == 403
    # beta's owner has a session 1 of their own; alpha's session is not reachable through beta
    beta = client.post("/api/v1/projects/beta/ingests", json={"dataset": "x"}, headers=world.h["other_owner"])
    assert beta.status_code == 201 and beta.json()["id"] == 1
    assert client.get(f"{BASE}/2", headers=world.h["owner"]).status_code == 404
    other = client.post(
        "/api/v1/projects/beta/ingests/1/batches", content=tar_body({"a": b"x"}), headers=world.h["owner"]
    )
    assert other.status_code == 404
    # a token without datasets:manage cannot create the dataset as a side effect
    narrow = client.post(
        "/api/v1/tokens", json={"name": "imp", "scopes": ["data:import"]}, headers=world.h["owner"]
    ).json()["token"]
    r = client.post(BASE, json={"dataset": "fresh"}, headers={"Authorization": f"Bearer {narrow}"})
    assert r.status_code == 403 and "datasets:manage" in r.json()["error"]["message"]


def test_a_source_is_recorded_once_and_resumes_by_lookup(client, world, runtime) -> None:
    h = world.h["owner"]
    number = start(client, h)
    a, _ = dicom_bytes(0, 0)
    b, _ = dicom_bytes(0, 1)
    first = batch(client, h, number, {"p/a.dcm": a, "p/b.dcm": b, "p/copy-of-a.dcm": a})
    assert [o["outcome"] for o in first["outcomes"]] == ["stored", "stored", "duplicate"]
    again = batch(
        client, h, number, {"p/a.dcm": a, "p/b.dcm": dicom_bytes(1, 5)[0], "p/c.dcm": dicom_bytes(0, 2)[0]}
    )
    assert [o["outcome"] for o in again["outcomes"]] == ["skipped", "skipped", "stored"]
    # the same instance with other bytes (a re-export) cannot take the first one's place
    other_bytes = pydicom.dcmread(io.BytesIO(a))
    other_bytes.InstanceNumber = 99
    out = io.BytesIO()
    other_bytes.save_as(out)
    clash = batch(client, h, number, {"p/a-reexport.dcm": out.getvalue()})
    assert (
        clash["outcomes"][0]["outcome"] == "error"
        and "same SOP Instance UID" in clash["outcomes"][0]["reasons"][0]
    )
    r = client.post(
        f"{BASE}/{number}/lookup", json={"paths": ["p/a.dcm", "p/zzz.dcm", "p/copy-of-a.dcm"]}, headers=h
    )
    assert r.json() == {"done": ["p/a.dcm", "p/copy-of-a.dcm"]}
    r = client.post(
        f"{BASE}/{number}/refused",
        json={"entries": [{"path": "../etc/passwd", "reason": "unsafe name"}]},
        headers=h,
    )
    assert r.json()["outcomes"][0]["outcome"] == "error" and r.json()["counts"]["error"] == 2
    assert client.post(f"{BASE}/{number}/finish", headers=h).status_code == 200
    again = client.post(f"{BASE}/{number}/finish", headers=h)  # idempotent: the same report
    assert again.status_code == 200 and again.json()["counts"]["stored"] == 3
    late = client.post(f"{BASE}/{number}/batches", content=tar_body({"p/d.dcm": b}), headers=h)
    assert late.status_code == 409 and late.json()["error"]["code"] == "ingest_closed"
    files = client.get("/api/v1/projects/alpha/datasets/scans/versions/1/files", headers=h).json()
    assert len(files) == 3
    assert runtime.store.stats()[0] == 4  # three files and the metadata table: nothing left over
    # a second ingest: a new version, and the metadata table grows a version holding both
    number = start(client, h)
    batch(client, h, number, {"q/a.dcm": dicom_bytes(2, 0)[0]})
    report = client.post(f"{BASE}/{number}/finish", headers=h).json()
    assert report["version"] == 2 and report["metadata_table"] == {
        "dataset": "scans-metadata",
        "version": 2,
        "rows": 4,
    }
    sql = "select dataset_version, count(*) from scans_metadata group by 1 order by 1"
    assert client.post("/api/v1/projects/alpha/query", json={"sql": sql}, headers=h).json()["rows"] == [
        [1, 3],
        [2, 1],
    ]


def test_bad_inputs_are_per_file_errors_and_the_rest_goes_on(client, world, runtime) -> None:
    h = world.h["owner"]
    number = start(client, h, policy=POLICY)
    good, _ = dicom_bytes(0, 0)
    files = {
        "ok.dcm": good,
        "truncated.dcm": good[: len(good) // 2],
        "big-endian.dcm": open(get_testdata_file("MR_small_bigendian.dcm"), "rb").read(),  # noqa: SIM115
        "deflated.dcm": open(get_testdata_file("image_dfl.dcm"), "rb").read(),  # noqa: SIM115
        "wrong-vr.dcm": good.replace(b"\x10\x00\x20\x00LO", b"\x10\x00\x20\x00ZZ"),
        "ragged.csv": (CSV_TEXT + "1,2\n").encode(),
        "latin1.csv": (CSV_TEXT + "00789,Zoë,M3,2021-05-01,5.0\n").encode("latin-1"),
        "random.bin": bytes(range(256)) * 40,
    }
    seen = outcomes(batch(client, h, number, files))
    assert seen["ok.dcm"][0] == "stored" and seen["big-endian.dcm"][0] == "stored"
    assert seen["deflated.dcm"][0] == "quarantined"  # valid, but a secondary capture: reviewed first
    assert seen["truncated.dcm"] == ("error", ["truncated: attribute PixelData ends early"])
    assert seen["wrong-vr.dcm"] == ("error", ["cannot de-identify: NotImplementedError while reading"])
    assert "line 4 has 2 field(s)" in seen["ragged.csv"][1][0]
    assert "not UTF-8" in seen["latin1.csv"][1][0]
    assert "not a recognised file type" in seen["random.bin"][1][0]
    # a zip batch with a traversal name, a link and a bomb: refused per entry, the rest is stored
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("../../escape.dcm", good)
        zf.writestr("bomb.bin", b"\0" * (3 * 1024 * 1024))
        link = zipfile.ZipInfo("link.dcm")
        link.create_system, link.external_attr = 3, 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("fine.dcm", dicom_bytes(1, 0)[0])
    seen = outcomes(batch(client, h, number, body.getvalue()))
    assert seen["fine.dcm"][0] == "stored"
    assert "unsafe name" in seen["../../escape.dcm"][1][0]
    assert "symbolic link" in seen["link.dcm"][1][0]
    assert "decompression bomb" in seen["bomb.bin"][1][0]
    garbage = client.post(f"{BASE}/{number}/batches", content=b"not a tar" * 200, headers=h)
    assert garbage.status_code == 422 and garbage.json()["error"]["code"] == "bad_archive"
    report = client.post(f"{BASE}/{number}/finish", headers=h).json()
    assert report["counts"]["stored"] == 3 and report["counts"]["quarantined"] == 1
    assert len(report["errors"]) == 8
    with runtime.db.session(write=False) as db:
        assert (
            db.scalar(sa.select(sa.func.count()).select_from(VersionFile)) == 3 + 1
        )  # and the metadata table
    assert runtime.store.stats()[0] == 5  # 3 files, 1 quarantined output, 1 metadata table


class FailingStore(LocalBlobStore):
    """The real store, with a disk that fails on the n-th write (fault injection, not a mock).
    ``_write`` is the one write path of ``put_stream`` and of a ``batch()``, which ingest uses."""

    def __init__(self, root, fail_at: int) -> None:
        super().__init__(root)
        self.writes, self.fail_at = 0, fail_at

    def _write(self, chunks, key, blob_id, changed=None):
        self.writes += 1
        if self.writes == self.fail_at:
            raise StoreError("injected: the disk failed")
        return super()._write(chunks, key, blob_id, changed)


def test_a_failure_in_the_middle_of_a_batch_stores_nothing(client, world, runtime, monkeypatch) -> None:
    h = world.h["owner"]
    number = start(client, h)
    files = {f"s/{i}.dcm": dicom_bytes(0, i)[0] for i in range(4)}
    real = runtime.store
    monkeypatch.setattr(runtime, "store", FailingStore(real.root, fail_at=3))
    r = client.post(f"{BASE}/{number}/batches", content=tar_body(files), headers=h)
    assert r.status_code == 507 and "nothing was stored" in r.json()["error"]["message"]
    assert real.stats()[0] == 0  # the two blobs written before the failure were removed

    # now the catalog write fails after every blob is in the store
    monkeypatch.setattr(runtime, "store", real)

    def refuse(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("INSERT INTO INGEST_SOURCES"):
            raise RuntimeError("injected: the database went away")

    sa.event.listen(runtime.db.engine, "before_cursor_execute", refuse)
    try:
        with pytest.raises(RuntimeError, match="injected"):
            client.post(f"{BASE}/{number}/batches", content=tar_body(files), headers=h)
    finally:
        sa.event.remove(runtime.db.engine, "before_cursor_execute", refuse)
    assert real.stats()[0] == 0
    with runtime.db.session(write=False) as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(IngestSource)) == 0
        assert db.scalar(sa.select(DatasetVersion.file_count)) == 0
    # the same batch again, with the fault gone: every file stored, once
    assert [o["outcome"] for o in batch(client, h, number, files)["outcomes"]] == ["stored"] * 4
    assert real.stats()[0] == 4


def test_tables_need_a_policy_and_cancel_removes_the_draft(client, world, runtime) -> None:
    h = world.h["owner"]
    number = start(client, h, dataset="visits", kind="table")
    seen = outcomes(batch(client, h, number, {"visits.csv": CSV_TEXT.encode()}))
    assert seen["visits.csv"][0] == "error" and "column policy" in seen["visits.csv"][1][0]
    nothing = client.post(f"{BASE}/{number}/finish", headers=h).json()  # nothing stored: no version
    assert nothing["version"] is None and nothing["counts"]["error"] == 1
    assert client.get("/api/v1/projects/alpha/datasets/visits/versions?drafts=true", headers=h).json() == []
    bad = client.post(
        BASE, json={"dataset": "visits", "policy": {"columns": {"a": {"action": "kep"}}}}, headers=h
    )
    assert bad.status_code == 422 and 'unknown "action"' in bad.json()["error"]["message"]
    number = start(client, h, dataset="visits", policy=POLICY)
    seen = outcomes(batch(client, h, number, {"v.csv": CSV_TEXT.encode(), "w.csv": CSV_TEXT.encode()[:-1]}))
    assert seen["v.csv"][0] == "stored" and "one table per version" in seen["w.csv"][1][0]
    assert client.post(f"{BASE}/{number}/finish", headers=h).json()["version"] == 1  # the empty draft went
    sql = "select patient_id, admitted from visits"
    rows = client.post("/api/v1/projects/alpha/query", json={"sql": sql}, headers=h).json()["rows"]
    p = Pseudonymiser(secret(runtime))
    assert {r[0] for r in rows} == {p.patient_id("00123"), p.patient_id("00456")}  # "00123" stayed text
    assert not {r[1] for r in rows} & {"2021-03-14", "2021-04-01"}  # dates shifted
    # the metadata table's name must be free for it
    client.post("/api/v1/projects/alpha/datasets", json={"name": "mr-metadata"}, headers=h)
    taken = client.post(BASE, json={"dataset": "mr"}, headers=h)
    assert taken.status_code == 409 and "mr-metadata" in taken.json()["error"]["message"]
    # cancel: the draft and the quarantined output go, the record stays
    number = start(client, h)
    batch(client, h, number, {"us.dcm": open(get_testdata_file("examples_ybr_color.dcm"), "rb").read()})  # noqa: SIM115
    before = runtime.store.stats()[0]
    assert client.delete(f"{BASE}/{number}", headers=h).status_code == 204
    assert runtime.store.stats()[0] == before - 1
    assert client.get(f"{BASE}/{number}", headers=h).json()["state"] == "cancelled"
    assert client.get("/api/v1/projects/alpha/datasets/scans/versions?drafts=true", headers=h).json() == []
    actions = [e.action for e in all_events(runtime)]
    for action in ("ingest.start", "ingest.batch", "ingest.quarantine", "ingest.finish", "ingest.cancel"):
        assert action in actions, action


def all_events(runtime):
    with runtime.db.session(write=False) as db:
        return list(db.scalars(sa.select(AuditEvent).where(AuditEvent.action.startswith("ingest."))).all())


def test_each_role_queries_its_own_view_of_a_table(client, world, runtime) -> None:
    """A Scientist whose view generalises the admission date to its year gets years; the Owner dates."""
    policy = {**POLICY, "views": {"data_scientist": {"admitted": {"action": "generalise", "date": "year"},
                                                     "mrn": {"action": "drop"}}}}  # fmt: skip
    h = world.h["owner"]
    number = start(client, h, dataset="visits", kind="table", policy=policy)
    batch(client, h, number, {"v.csv": CSV_TEXT.encode()})
    assert client.post(f"{BASE}/{number}/finish", headers=h).json()["version"] == 1
    sql = "select * from visits"
    owner = client.post("/api/v1/projects/alpha/query", json={"sql": sql}, headers=h).json()
    scientist = client.post(
        "/api/v1/projects/alpha/query", json={"sql": sql}, headers=world.h["scientist"]
    ).json()
    assert "columns" in owner and "columns" in scientist, (owner, scientist)
    assert "mrn" in owner["columns"] and "mrn" not in scientist["columns"]
    at = scientist["columns"].index("admitted")
    assert all(len(str(row[at])) == 4 for row in scientist["rows"])  # a year, not a date
    at = owner["columns"].index("admitted")
    assert all(len(str(row[at])) == 10 for row in owner["rows"])  # the (shifted) date itself
    # A job the Scientist signs reads the same view from /data (the local executor's staging).
    import gzip
    import os
    import tarfile

    import pyarrow.parquet as pq

    from sanctum.access.permissions import Role
    from sanctum.jobs import staging
    from sanctum.jobs.models import JobInput

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("job.py"), io.BytesIO(b""))
    with runtime.db.session(write=False) as db:
        dataset = db.scalar(sa.select(Dataset).where(Dataset.name == "visits"))
        version = db.scalar(sa.select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id))
        pinned = JobInput(address="visits", dataset_id=dataset.id, version_id=version.id, version_number=1,
                          version_manifest_sha256=version.manifest_sha256 or "")  # fmt: skip
        bundle = gzip.compress(raw.getvalue())
        for role, has_mrn in ((Role.DATA_SCIENTIST, False), (Role.DATA_OWNER, True)):
            staged = staging.stage(db, runtime.store, runtime.keyring, data_dir=runtime.settings.data_dir,
                                   job_id=990 + has_mrn, bundle=bundle, inputs=[pinned],
                                   max_bundle_bytes=1 << 20, sandbox_uid=os.getuid(), role=role)  # fmt: skip
            table = pq.read_table(staged.inputs["visits"] / "visits.parquet")
            staging.wipe(staged.root)
            assert ("mrn" in table.column_names) is has_mrn
