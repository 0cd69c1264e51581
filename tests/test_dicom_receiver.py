"""The DICOM receiver against real senders: dcmtk's ``storescu`` and a pynetdicom SCU, a real catalog
(SQLite and PostgreSQL), blob store and de-identification worker.

What a data owner and a PACS administrator rely on: a series sent by a routed AE title becomes one
new de-identified version (every stored byte searched for the planted identifiers) with its
metadata rows; a malformed instance is refused with a failure status while the association goes on;
an unknown AE title is rejected before any data and audited; an aborted association, a killed
receiver or a stopped server commits nothing; only data owners manage routes, and an AE title
belongs to one project.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from conftest import IN_CI, free_port, missing
from ingest_helpers import UID_ROOT, dicom_bytes, plaintexts
from sanctum.api.app import create_app
from sanctum.api.runtime import Runtime
from sanctum.audit import verify
from sanctum.config import ConfigError, load_settings
from sanctum.datasets.fsck import check
from sanctum.db.models import AuditEvent, Dataset, DatasetVersion, User, VersionFile
from sanctum.dicom.models import DicomReception, DicomRoute
from sanctum.dicom.receiver import DicomReceiver, ListenConfig
from sanctum.ingest.models import IngestSession, IngestSource
from test_cli_client import Cli, private_config  # noqa: F401 (autouse: no real ~/.config/sanctum)

ROUTES = "/api/v1/projects/alpha/dicom-routes"
AE = "CTSCAN"


@pytest.fixture
def settings(data_dir, catalog, tmp_path):
    """One de-identification worker: the receiver ingests one instance at a time anyway."""
    return load_settings(data_dir, database_url=catalog.fresh_url(tmp_path), ingest_workers=1)


@pytest.fixture
def storescu() -> str:
    path = shutil.which("storescu")
    if path is None:
        missing("dcmtk's storescu is not installed (apt-get install dcmtk)")
    return path


@pytest.fixture
def receiver(runtime):
    started = DicomReceiver(runtime, ListenConfig(host="127.0.0.1", port=free_port()))
    started.start()
    yield started
    started.stop()


def route(client, h, ae: str = AE, dataset: str = "scans", project: str = "alpha", **body):
    return client.put(
        f"/api/v1/projects/{project}/dicom-routes/{ae}", json={"dataset": dataset, **body}, headers=h
    )


def write(folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.write_bytes(data)
    return str(path)


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> dict[str, object]:
    """One synthetic series of CT and MR instances with identifiers planted everywhere, a CT without
    its pixel data in the middle (malformed), and an ultrasound (burned-in text likely) at the end."""
    folder = tmp_path_factory.mktemp("series")
    series_uid = generate_uid(UID_ROOT, entropy_srcs=["receiver-series"])
    markers: list[str] = []
    good = []
    for i, sample in enumerate(["CT_small.dcm"] * 3 + ["MR_small.dcm"] * 2):
        data, planted = dicom_bytes(5, i, sample=sample, SeriesInstanceUID=series_uid)
        good.append(write(folder, f"IM{i}.dcm", data))
        markers += planted
    data, planted = dicom_bytes(5, 9, SeriesInstanceUID=series_uid)
    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.PixelData
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    bad = write(folder, "BAD.dcm", out.getvalue())
    data, planted_us = dicom_bytes(5, 10, sample="examples_ybr_color.dcm")
    us = write(folder, "US.dcm", data)
    markers += planted + planted_us
    order = [good[0], good[1], bad, good[2], good[3], good[4], us]
    return {"files": order, "good": good, "bad": bad, "us": us, "markers": sorted(set(markers))}


def storescu_send(storescu: str, port: int, files: list[str], *, aet: str = AE, extra: tuple[str, ...] = ()):
    """Send ``files`` in one association (``--no-halt``: a refused instance does not stop the rest);
    returns the exit code, each file's store response as storescu reports it, and its output."""
    done = subprocess.run(
        [storescu, "-v", "--no-halt", *extra, "-aet", aet, "-aec", "SANCTUM", "127.0.0.1", str(port), *files],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    output = done.stdout + done.stderr
    responses, current = {}, None
    for line in output.splitlines():
        if m := re.match(r"I: Sending file: (.+)$", line):
            current = m.group(1)
        elif (m := re.match(r"I: Received Store Response \((.+)\)", line)) and current:
            responses[current] = m.group(1)
    return done.returncode, responses, output


def blobs_with_keys(runtime) -> list[tuple[str, bytes]]:
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


def sessions(runtime) -> list[IngestSession]:
    with runtime.db.session(write=False) as db:
        return list(db.scalars(sa.select(IngestSession).order_by(IngestSession.id)).all())


def events(runtime, prefix: str) -> list[AuditEvent]:
    with runtime.db.session(write=False) as db:
        return list(
            db.scalars(
                sa.select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.seq)
            )
        )


def receptions(runtime) -> list[DicomReception]:
    with runtime.db.session(write=False) as db:
        return list(db.scalars(sa.select(DicomReception).order_by(DicomReception.id)).all())


def wait_for(condition, what: str, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------- storescu


def test_a_series_from_storescu_becomes_one_de_identified_version(
    client, world, runtime, receiver, storescu, series
) -> None:
    h = world.h["owner"]
    assert route(client, h).status_code == 201
    port = receiver.config.port

    # -xy: also propose JPEG Baseline, the ultrasound's transfer syntax (pixel data arrives as sent)
    code, responses, output = storescu_send(storescu, port, series["files"], extra=("-xy",))
    # the malformed instance in the middle is refused, the association goes on, the rest is received
    assert responses == {
        **{f: "Success" for f in series["files"] if f != series["bad"]},
        series["bad"]: "Error: CannotUnderstand",
    }, output
    assert "Releasing Association" in output and code == 0  # with --no-halt it finishes normally

    (ingest,) = sessions(runtime)  # one association, one session, committed on release
    assert ingest.state == "finished" and ingest.version_number == 1
    counts = {k: ingest.counts[k] for k in ("files", "stored", "quarantined", "error", "dicom")}
    assert counts == {"files": 7, "stored": 5, "quarantined": 1, "error": 1, "dicom": 7}
    listing = client.get("/api/v1/projects/alpha/datasets/scans/versions/1/files", headers=h).json()
    assert len(listing) == 5 and all(f["path"].startswith("dicom/P") for f in listing)
    assert client.get("/api/v1/projects/alpha/datasets/scans/versions/2", headers=h).status_code == 404

    # the report names the refused and quarantined instances (owners only), with reasons
    report = client.get(f"/api/v1/projects/alpha/ingests/{ingest.number}/report", headers=h).json()
    (error,) = report["errors"]
    assert error["path"].startswith("000003-") and "without pixel data" in error["reasons"][0]
    (quarantined,) = report["quarantined"]
    assert quarantined["path"].startswith("000007-") and "ultrasound" in quarantined["reasons"][0]
    assert report["metadata_table"] == {"dataset": "scans-metadata", "version": 1, "rows": 5}

    # the metadata rows, queried like any table; one patient, one study, one series
    sql = "select patient_id, study_uid, series_uid, modality from scans_metadata order by modality"
    r = client.post("/api/v1/projects/alpha/query", json={"sql": sql}, headers=world.h["scientist"])
    rows = r.json()["rows"]
    assert [row[3] for row in rows] == ["CT", "CT", "CT", "MR", "MR"]
    assert len({tuple(row[:3]) for row in rows}) == 1 and rows[0][0].startswith("P")

    # privacy: no planted identifier in any stored byte (version files, quarantine, metadata table)
    texts = plaintexts(runtime, blobs_with_keys(runtime))
    assert len({b for b, _ in texts}) == 7
    for marker in series["markers"]:
        for blob_id, text in texts:
            assert marker.encode() not in text, (marker, blob_id)
    with runtime.db.session(write=False) as db:
        assert check(db, runtime.store, runtime.keyring, deep=True).ok

    # an unknown AE title is rejected at association time, audited, and nothing is stored
    blobs_before = sorted(runtime.store.iter_blob_ids())
    code, responses, output = storescu_send(storescu, port, series["good"][:1], aet="UNKNOWN")
    assert code != 0 and responses == {} and "Calling AE Title Not Recognized" in output, output
    assert len(sessions(runtime)) == 1 and sorted(runtime.store.iter_blob_ids()) == blobs_before
    (denied,) = events(runtime, "dicom.association")[-1:]
    assert (denied.outcome, denied.target, denied.project_id) == ("denied", "ae:UNKNOWN", None)
    assert json.loads(denied.details)["reason"] == "calling AE title not recognised"

    # the trail: the association, its instances and its end, in the project, chained intact
    actions = [e.action for e in events(runtime, "") if e.project_id is not None]
    assert actions.count("dicom.association") == 1 and actions.count("ingest.batch") == 7
    assert actions.index("ingest.finish") < actions.index("dicom.association.end")
    (end,) = events(runtime, "dicom.association.end")
    assert json.loads(end.details)["state"] == "committed" and end.actor_email == world.owner.email
    assert [r.state for r in receptions(runtime)] == ["committed"]
    with runtime.db.session(write=False) as db:
        assert verify(db).ok


# --------------------------------------------------------------------------- pynetdicom as the sender


def scu(port: int, ae: str = AE):
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE as Entity
    from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification

    entity = Entity(ae_title=ae)
    for context in (CTImageStorage, MRImageStorage):
        entity.add_requested_context(context, ExplicitVRLittleEndian)  # as the files are encoded
    entity.add_requested_context(Verification)
    return entity.associate("127.0.0.1", port, ae_title="SANCTUM")


def test_an_aborted_association_commits_nothing_and_a_mismatch_is_refused(
    client, world, runtime, receiver, series, tmp_path, monkeypatch
) -> None:
    from pynetdicom import _config

    assert route(client, world.h["owner"]).status_code == 201
    port = receiver.config.port

    # an instance whose data set contradicts its request is refused (0xA900); the rest goes on.
    # (Sending files as they are, pynetdicom takes the request's SOP Class from the file meta.)
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    ds = pydicom.dcmread(series["good"][1])
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.MRImageStorage  # the request says MR, the data CT
    lying = tmp_path / "lying.dcm"
    ds.save_as(lying)  # as it is: enforcing the file format would repair the meta
    assoc = scu(port)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assert assoc.send_c_store(str(lying)).Status == 0xA900
    assert assoc.send_c_store(series["good"][0]).Status == 0x0000
    assert assoc.send_c_store(series["good"][0]).Status == 0x0000  # sent twice: held once (duplicate)
    assoc.release()
    (first,) = sessions(runtime)
    assert first.state == "finished" and first.counts["stored"] == 1 and first.counts["duplicate"] == 1
    with runtime.db.session(write=False) as db:
        reasons = db.scalars(sa.select(IngestSource.reason).where(IngestSource.outcome == "error")).all()
    assert reasons == [
        "the data set's SOP Class UID differs from the C-STORE request's Affected SOP Class UID"
    ]
    blobs_after_first = sorted(runtime.store.iter_blob_ids())

    # an aborted association: its instances were stored as they came, and all of it is discarded
    assoc = scu(port)
    assert assoc.send_c_store(series["good"][2]).Status == 0x0000
    assert assoc.send_c_store(series["good"][3]).Status == 0x0000
    assert len(sorted(runtime.store.iter_blob_ids())) == len(blobs_after_first) + 2  # the draft's files
    assoc.abort()
    wait_for(lambda: sessions(runtime)[-1].state == "cancelled", "the aborted association's session")
    wait_for(lambda: receptions(runtime)[-1].state == "cancelled", "its reception row")
    second = sessions(runtime)[-1]
    assert second.version_id is None and second.counts["stored"] == 2
    assert sorted(runtime.store.iter_blob_ids()) == blobs_after_first
    with runtime.db.session(write=False) as db:
        versions = db.scalars(
            sa.select(DatasetVersion.number).join(Dataset).where(Dataset.name == "scans")
        ).all()
        assert versions == [1] and check(db, runtime.store, runtime.keyring).ok
    (end,) = [
        e for e in events(runtime, "dicom.association.end") if json.loads(e.details)["state"] == "cancelled"
    ]
    assert end.project_id is not None

    # an association that only echoes leaves no session behind
    assoc = scu(port)
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert len(sessions(runtime)) == 2

    # a route whose owner is no longer active accepts nothing; the owners see the refusal
    with runtime.db.session() as db:
        db.get(User, world.owner.id).is_active = False
    assoc = scu(port)
    assert assoc.is_rejected and not assoc.is_established
    denied = events(runtime, "dicom.association")[-1]
    assert denied.outcome == "denied" and denied.project_name == "alpha"
    assert "no longer an active data owner" in json.loads(denied.details)["reason"]
    assert len(sessions(runtime)) == 2


# --------------------------------------------------------------------------- routes over REST


def test_routes_are_for_data_owners_and_an_ae_title_belongs_to_one_project(
    client, world, runtime, people
) -> None:
    h = world.h
    created = route(client, h["owner"], options={"dates": "keep", "retain_uids": True})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["ae_title"] == AE and body["dataset"] == "scans" and body["project"] == "alpha"
    assert body["options"]["dates"] == "keep" and body["set_by"] == world.owner.email and body["active"]
    changed = route(client, h["owner"], dataset="incoming")
    assert changed.status_code == 200 and changed.json()["dataset"] == "incoming"
    assert changed.json()["options"]["dates"] == "shift"  # a PUT replaces the route
    assert [r["ae_title"] for r in client.get(ROUTES, headers=h["owner"]).json()] == [AE]

    # other roles: 403; non-members and admins: 404, as if the project did not exist
    for name in ("scientist", "checker", "auditor"):
        assert client.get(ROUTES, headers=h[name]).status_code == 403
        assert client.get(f"{ROUTES}/{AE}", headers=h[name]).status_code == 403
        assert route(client, h[name], ae="OTHER").status_code == 403
        assert client.delete(f"{ROUTES}/{AE}", headers=h[name]).status_code == 403
    for name in ("outsider", "admin", "other_owner"):
        r = route(client, h[name])
        assert r.status_code == 404 and r.json()["error"]["message"] == "project not found"

    # another project cannot claim the AE title (409), and does not see alpha's route
    taken = route(client, h["other_owner"], project="beta")
    assert taken.status_code == 409 and "alpha" not in taken.text
    assert client.get(f"/api/v1/projects/beta/dicom-routes/{AE}", headers=h["other_owner"]).status_code == 404
    assert (
        client.delete(f"/api/v1/projects/beta/dicom-routes/{AE}", headers=h["other_owner"]).status_code == 404
    )

    # bad input: a clear 422, nothing stored
    assert (
        client.post(
            "/api/v1/projects/alpha/datasets", json={"name": "visits", "kind": "table"}, headers=h["owner"]
        ).status_code
        == 201
    )
    for ae, dataset, code in (
        ("A\\B", "scans", "invalid_ae_title"),
        ("THIS-IS-SEVENTEEN", "scans", "invalid_ae_title"),
        (" LEADING", "scans", None),  # leading/trailing spaces are not significant in DICOM: dropped
        ("PACS2", "beta.scans", "shared_dataset"),
        ("PACS2", "Bad_Name", "invalid_name"),
        ("PACS2", "visits", "invalid_kind"),
    ):
        r = route(client, h["owner"], ae=ae, dataset=dataset)
        if code is None:
            assert r.status_code == 201 and r.json()["ae_title"] == "LEADING"
            continue
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (ae, dataset, r.text)
    assert route(client, h["owner"], options={"dates": "sometimes"}).status_code == 422
    assert (
        client.put(f"{ROUTES}/X", json={"dataset": "scans", "extra": 1}, headers=h["owner"]).status_code
        == 422
    )
    with runtime.db.session(write=False) as db:
        assert sorted(db.scalars(sa.select(DicomRoute.ae_title)).all()) == [AE, "LEADING"]

    # a token that may manage routes but not import cannot route data in on its owner's behalf
    narrow = people.headers(world.owner, scopes=["dicom:routes"])
    r = route(client, narrow, ae="PACS3")
    assert r.status_code == 403 and "data:import" in r.json()["error"]["message"]
    assert client.get(ROUTES, headers=narrow).status_code == 200

    assert client.delete(f"{ROUTES}/{AE}", headers=h["owner"]).status_code == 204
    assert client.get(f"{ROUTES}/{AE}", headers=h["owner"]).status_code == 404
    assert route(client, h["other_owner"], project="beta").status_code == 201  # free again
    actions = [(e.action, e.project_name, e.target) for e in events(runtime, "dicom.route.")]
    assert actions == [
        ("dicom.route.set", "alpha", f"ae:{AE}"),
        ("dicom.route.set", "alpha", f"ae:{AE}"),
        ("dicom.route.set", "alpha", "ae:LEADING"),
        ("dicom.route.delete", "alpha", f"ae:{AE}"),
        ("dicom.route.set", "beta", f"ae:{AE}"),
    ]


# --------------------------------------------------------------------------- the CLI


def listen(settings, port: int, *extra: str) -> subprocess.Popen:
    """``sanctum dicom listen`` as its own process (its own session, so its worker goes with it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANCTUM_")}
    env |= {"SANCTUM_DATABASE_URL": settings.resolved_database_url, "SANCTUM_INGEST_WORKERS": "1"}
    script = Path(sys.executable).parent / "sanctum"
    process = subprocess.Popen(
        [str(script), "dicom", "listen", "--data-dir", str(settings.data_dir), "--port", str(port), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    assert "listening on" in line, (line, process.stderr.read() if process.stderr else "")
    return process


def test_a_killed_receiver_commits_nothing_and_its_next_start_closes_what_it_left(
    client, world, runtime, settings, series
) -> None:
    assert route(client, world.h["owner"]).status_code == 201
    port = free_port()
    process = listen(settings, port)
    try:
        open_assoc, released_assoc = scu(port), scu(port)
        for assoc, files in ((open_assoc, series["good"][:2]), (released_assoc, series["good"][2:4])):
            for path in files:
                assert assoc.send_c_store(path).Status == 0x0000
        os.killpg(process.pid, signal.SIGKILL)  # the receiver dies with both associations open
        process.wait(30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
    assert [s.state for s in sessions(runtime)] == ["open", "open"]
    assert [r.state for r in receptions(runtime)] == ["open", "open"]
    with runtime.db.session(write=False) as db:
        committed = db.scalars(sa.select(DatasetVersion).where(DatasetVersion.state == "committed")).all()
        assert committed == []  # nothing of either association is visible
    # as if the second had been released and the receiver died while committing it
    with runtime.db.session() as db:
        db.get(DicomReception, receptions(runtime)[1].id).state = "released"

    process = listen(settings, port)  # the next start closes what the dead one left
    try:
        first, second = sessions(runtime)
        assert (first.state, first.version_id) == ("cancelled", None)
        assert second.state == "finished" and second.counts["stored"] == 2
        assert [r.state for r in receptions(runtime)] == ["cancelled", "committed"]
        with runtime.db.session(write=False) as db:
            assert check(db, runtime.store, runtime.keyring).ok  # the cancelled draft's blobs are gone
        assoc = scu(port)  # and it receives as usual
        assert assoc.send_c_store(series["good"][4]).Status == 0x0000
        assoc.release()
        assert sessions(runtime)[-1].state == "finished"
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        assert "stopping" in (process.stdout.read() if process.stdout else "")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
    recovered = [json.loads(e.details)["state"] for e in events(runtime, "dicom.association.recovered")]
    assert sorted(recovered) == ["cancelled", "committed"]


def test_route_commands(world, people, live_server) -> None:
    cli = Cli(world, people, live_server.url)
    out = cli.ok(
        "owner", "dicom", "route", "add", "alpha", AE, "scans", "--dates", "keep", "--retain", "uids"
    )
    assert f"AE title {AE} → alpha/scans" in out
    (listed,) = cli.json("owner", "dicom", "route", "ls", "alpha")
    assert (
        listed["dataset"] == "scans"
        and listed["options"]["retain_uids"]
        and listed["options"]["dates"] == "keep"
    )
    assert AE in cli.ok("owner", "dicom", "route", "ls", "alpha")
    refused = cli("scientist", "dicom", "route", "add", "alpha", "OTHER", "scans")
    assert refused.exit_code == 1 and "data_scientist may not dicom:routes" in refused.stderr
    taken = cli("other_owner", "dicom", "route", "add", "beta", AE, "scans")
    assert taken.exit_code == 1 and "routed to another project" in taken.stderr
    assert cli("owner", "dicom", "route", "add", "alpha", "X", "scans", "--retain", "names").exit_code == 1
    cli.ok("owner", "dicom", "route", "rm", "alpha", AE)
    assert cli.json("owner", "dicom", "route", "ls", "alpha") == []


# --------------------------------------------------------------------------- the server runs it


def test_the_server_runs_the_receiver_when_dicom_port_is_set(data_dir, catalog, tmp_path) -> None:
    port = free_port()
    url = catalog.fresh_url(tmp_path)
    rt = Runtime.start(load_settings(data_dir, database_url=url, dicom_port=port, job_runner=False))
    try:
        with TestClient(create_app(runtime=rt)) as client:
            assert client.app.state.dicom is not None
            assoc = scu(port, ae="ANY")  # listening; an unrouted AE title is rejected
            assert assoc.is_rejected
        with pytest.raises(OSError):  # stopped with the app
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with socket.socket() as taken:  # a port in use (another worker has it): the app runs without
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the TIME_WAIT just left
            taken.bind(("127.0.0.1", port))
            taken.listen()
            with TestClient(create_app(runtime=rt)) as client:
                assert client.app.state.dicom is None
    finally:
        rt.close()


def test_unsafe_receiver_configurations_are_refused(tmp_path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    cases = {
        "refusing to receive DICOM on 0.0.0.0 without TLS": {"host": "0.0.0.0"},
        "needs both a certificate and its key": {"tls_cert": tmp_path / "cert.pem"},
        "needs dicom_tls_cert": {"tls_ca": tmp_path / "cert.pem"},
        "does not exist": {"tls_cert": tmp_path / "nope.pem", "tls_key": tmp_path / "cert.pem"},
        "dicom_ae_title: invalid AE title": {"ae_title": "A\\B"},
    }
    for message, values in cases.items():
        with pytest.raises(ConfigError, match=message):
            ListenConfig(**{"host": "127.0.0.1", "port": 11112, **values}).check()
    ListenConfig(host="0.0.0.0", port=11112, allow_plaintext=True).check()


# --------------------------------------------------------------------------- TLS


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server and a client certificate it signed, made for this test (cryptography)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def build(subject: str, issuer: x509.Name | None, key, signer, extensions):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=2))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    def pem_key(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = build("test CA", None, ca_key, ca_key, [(x509.BasicConstraints(ca=True, path_length=None), True)])
    files = {"ca.crt": ca.public_bytes(serialization.Encoding.PEM)}
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    for who, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = build(who, ca.subject, key, ca_key, [(san, False), (x509.ExtendedKeyUsage([usage]), False)])
        files[f"{who}.crt"] = cert.public_bytes(serialization.Encoding.PEM)
        files[f"{who}.key"] = pem_key(key)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


def test_tls_with_client_certificates(client, world, runtime, storescu, series, tmp_path) -> None:
    usage = subprocess.run([storescu, "--help"], capture_output=True, text=True, timeout=30)
    if "--enable-tls" not in usage.stdout + usage.stderr:
        if IN_CI:
            pytest.fail("this storescu has no TLS support (CI=true: required)")
        pytest.skip("this storescu was built without TLS")
    certs = _certificates(tmp_path)
    assert route(client, world.h["owner"]).status_code == 201
    config = ListenConfig(
        host="127.0.0.1",
        port=free_port(),
        tls_cert=certs["server.crt"],
        tls_key=certs["server.key"],
        tls_ca=certs["ca.crt"],
    )
    receiver = DicomReceiver(runtime, config)
    receiver.start()
    try:
        trust = ("+cf", str(certs["ca.crt"]))
        with_cert = ("+tls", str(certs["client.key"]), str(certs["client.crt"]), "-pw", *trust)
        code, responses, output = storescu_send(storescu, config.port, series["good"][:2], extra=with_cert)
        assert code == 0 and set(responses.values()) == {"Success"}, output
        # without a client certificate, or without TLS: no association, nothing stored
        blobs = sorted(runtime.store.iter_blob_ids())
        for extra in (("+tla", *trust), ()):
            code, responses, output = storescu_send(storescu, config.port, series["good"][2:3], extra=extra)
            assert code != 0 and responses == {}, output
        assert sorted(runtime.store.iter_blob_ids()) == blobs
    finally:
        receiver.stop()
    (ingest,) = sessions(runtime)
    assert ingest.state == "finished" and ingest.counts["stored"] == 2
