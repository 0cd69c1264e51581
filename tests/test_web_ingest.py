"""The ingest pages: upload from the browser, the report, the quarantine review, the anonymity report
and the DICOM metadata table, driven through their forms as a browser without JavaScript would.
"""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from tests.test_web import Browser, csrf_of

from ingest_helpers import CSV_TEXT, POLICY, dicom_bytes, patient_markers, tar_body
from sanctum.db.models import AuditEvent
from sanctum.ingest.models import IngestSession, IngestSource

PAGES = "/projects/alpha/ingests"


def login(app, person) -> Browser:
    b = Browser(app)
    b.login(person)
    return b


def zip_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()


def upload(b: Browser, files: list[tuple[str, bytes]], csrf: str | None = None, **fields: str):
    token = csrf if csrf is not None else b.csrf(PAGES)
    data = {"csrf": token, "dataset": "scans", **fields}
    parts = [("files", (name, body, "application/octet-stream")) for name, body in files]
    return b.post(PAGES, data=data, files=parts)


def sessions(runtime) -> int:
    with runtime.db.session(write=False) as db:
        return db.scalar(sa.select(sa.func.count()).select_from(IngestSession)) or 0


@pytest.fixture
def owner(app, world) -> Browser:
    return login(app, world.owner)


def test_upload_a_zip_see_the_report_and_review_the_quarantined_file(app, world, runtime, owner) -> None:
    burned, markers = dicom_bytes(1, 1, BurnedInAnnotation="YES")
    archive = zip_of(
        {
            "Quux Zebulon1/a.dcm": dicom_bytes(1, 0)[0],
            "Quux Zebulon1/b.dcm": burned,
            "notes.txt": b"not a medical file",
        }
    )
    r = upload(owner, [("export.zip", archive)])
    assert r.status_code == 303, r.text
    report_url = r.headers["location"]
    assert re.fullmatch(rf"{PAGES}/\d+", report_url)

    page = owner.get(report_url)
    assert page.status_code == 200
    assert "Quux Zebulon1/b.dcm" in page.text and "BurnedInAnnotation is YES" in page.text
    assert "notes.txt" in page.text and "not a recognised file type" in page.text
    assert "dicom:U" in page.text  # actions per kind
    for marker in markers[:2]:  # the report shows no value from a file (the path is the owner's own)
        assert marker.split("^")[-1] not in page.text.replace("Quux Zebulon1/", "")
    listing = owner.get(PAGES)
    assert f'href="{report_url}"' in listing.text and 'href="/projects/alpha/ingests"' in listing.text

    review_url = report_url + "/quarantine"
    page = owner.get(review_url)
    (img,) = re.findall(r'<img src="([^"]+preview\.png)"', page.text)
    png = owner.get(img)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.headers["cache-control"] == "no-store"
    mask_action = re.search(r'action="([^"]+/masks)"', page.text).group(1)

    # a rectangle outside the image: refused on the page, nothing stored
    r = owner.post(
        mask_action, {"csrf": csrf_of(page.text), "x": "120", "y": "0", "width": "20", "height": "4"}
    )
    assert r.status_code == 422 and "inside the image" in r.text
    r = owner.post(
        mask_action, {"csrf": csrf_of(page.text), "x": "ten", "y": "0", "width": "2", "height": "4"}
    )
    assert r.status_code == 422 and "whole number" in r.text
    r = owner.post(
        mask_action, {"csrf": csrf_of(page.text), "x": "2", "y": "3", "width": "40", "height": "10"}
    )
    assert r.status_code == 303
    page = owner.get(r.headers["location"])
    assert "Rectangle added" in page.text and "2, 3, 40, 10" in page.text
    pixels = np.asarray(Image.open(io.BytesIO(owner.get(img).content)))
    assert (pixels[3:13, 2:42] == 0).all()

    release = re.search(r'action="([^"]+/release)"', page.text).group(1)
    r = owner.post(release, {"csrf": csrf_of(page.text)})
    assert r.status_code == 303
    page = owner.get(r.headers["location"])
    assert "Released" in page.text and "version 2" in page.text
    r = owner.post(release, {"csrf": csrf_of(page.text)})
    assert r.status_code == 409 and "already released" in r.text
    page = owner.get(report_url)
    assert "released" in page.text and "1 rectangle(s) masked" in page.text

    # the metadata table page shows the instances, released one included, and links to the query page
    page = owner.get("/projects/alpha/datasets/scans/metadata")
    assert page.status_code == 200 and "2 rows" in page.text
    assert 'href="/projects/alpha/query"' in page.text and "scans_metadata" in page.text
    assert patient_markers(1)["PatientID"] not in page.text
    dataset = owner.get("/projects/alpha/datasets/scans")
    assert 'href="/projects/alpha/datasets/scans/metadata"' in dataset.text


def test_upload_needs_csrf_an_owner_and_files(app, world, runtime, owner, people) -> None:
    one = [("a.dcm", dicom_bytes(2, 0)[0])]
    r = upload(owner, one, csrf="forged")
    assert r.status_code == 403
    r = upload(owner, [("empty.dcm", b"")], dataset="")
    assert r.status_code == 422 and "Name the dataset" in r.text
    r = upload(owner, [("broken.zip", b"PK\x03\x04 not really")])
    assert r.status_code == 422 and "not a readable tar or zip" in r.text
    assert sessions(runtime) == 0
    # loose files (not an archive) are sources named after the file
    r = upload(owner, one)
    assert r.status_code == 303
    assert "a.dcm" not in owner.get(r.headers["location"]).text  # stored, so not listed as a problem

    scientist = login(app, world.scientist)
    for path in (PAGES, f"{PAGES}/1", f"{PAGES}/1/quarantine", "/projects/alpha/datasets/scans/anonymity"):
        assert scientist.get(path).status_code == 403, path
    r = scientist.post(
        PAGES, {"csrf": scientist.csrf("/me/2fa"), "dataset": "scans"}, files=[("files", ("x", b"x"))]
    )
    assert r.status_code == 403
    outsider = login(app, world.outsider)
    assert outsider.get(PAGES).status_code == 404
    assert outsider.get(f"{PAGES}/1/quarantine/1/preview.png").status_code == 404
    other = login(app, world.other_owner)
    assert other.get("/projects/beta/ingests/1").status_code == 404  # beta has no ingest 1
    assert sessions(runtime) == 1
    # the data nav shows Ingest to owners only
    assert 'href="/projects/alpha/ingests"' in owner.get("/projects/alpha/datasets").text
    assert 'href="/projects/alpha/ingests"' not in scientist.get("/projects/alpha/datasets").text


def test_anonymity_report_uses_the_declared_columns_or_the_owners_choice(
    app, client, world, runtime, owner
) -> None:
    h = world.h["owner"]
    policy = {**POLICY, "quasi_identifiers": ["admitted"], "sensitive": ["hba1c"]}
    r = client.post(
        "/api/v1/projects/alpha/ingests",
        json={"dataset": "visits", "kind": "table", "policy": policy},
        headers=h,
    )
    number = r.json()["id"]
    body = tar_body({"visits.csv": CSV_TEXT.encode()})
    assert (
        client.post(f"/api/v1/projects/alpha/ingests/{number}/batches", content=body, headers=h).status_code
        == 200
    )
    assert client.post(f"/api/v1/projects/alpha/ingests/{number}/finish", headers=h).status_code == 200

    page = owner.get("/projects/alpha/datasets/visits/anonymity")
    assert page.status_code == 200
    result = page.text[page.text.index('id="anonymity-result"') :]
    assert "l-diversity of hba1c" in result and "<dt>k (smallest class)</dt><dd>1</dd>" in result
    assert 'id="anonymity-stored"' in page.text  # the report stored at commit: nothing decrypted
    page = owner.get("/projects/alpha/datasets/visits/anonymity", params={"qi": ["hba1c"], "k": "2"})
    assert "<dt>Quasi-identifiers</dt><dd>hba1c</dd>" in page.text
    page = owner.get(
        "/projects/alpha/datasets/visits/anonymity", params={"qi": ["hba1c"], "sensitive": ["hba1c"]}
    )
    assert page.status_code == 422 and "anonymity-result" not in page.text
    with runtime.db.session(write=False) as db:
        audited = db.scalars(
            sa.select(AuditEvent.action).where(AuditEvent.action == "dataset.anonymity_report")
        ).all()
    assert len(audited) == 1  # only the owner's own choice read the table
    assert (
        'href="/projects/alpha/datasets/visits/anonymity' in owner.get("/projects/alpha/datasets/visits").text
    )
    # a files dataset has no anonymity report
    upload(owner, [("a.dcm", dicom_bytes(4, 0)[0])])
    assert owner.get("/projects/alpha/datasets/scans/anonymity").status_code == 404


def test_a_failed_ingest_run_leaves_no_open_session(app, world, runtime, owner, monkeypatch) -> None:
    """A crash in the middle of the pipeline (the store fails) cancels the session: no draft stays."""
    from sanctum.ingest import batches

    def broken(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(batches, "ingest_files", broken)
    with pytest.raises(OSError):
        upload(owner, [("a.dcm", dicom_bytes(5, 0)[0])])
    with runtime.db.session(write=False) as db:
        states = db.scalars(sa.select(IngestSession.state)).all()
        assert db.scalar(sa.select(sa.func.count()).select_from(IngestSource)) == 0
    assert states == ["cancelled"]


def test_the_demo_data_comes_in_through_the_pipeline_once(app, world, runtime, owner) -> None:
    """``sanctum demo``'s data: de-identified on the way in, with one ultrasound to review, the
    policy's quasi-identifiers for the anonymity report, and nothing ingested twice."""
    from sanctum import demo_ingest
    from sanctum.access.permissions import Permission
    from sanctum.db.models import User
    from sanctum.demo import _owner_principal
    from sanctum.projects import service as projects

    with runtime.db.session(write=False) as db:
        ctx = projects.load(
            db, _owner_principal(db.get(User, world.owner.id)), "alpha", Permission.DATA_IMPORT
        )
    first = demo_ingest.load(runtime, ctx)
    assert set(first) >= {"clinical-visits", "imaging"}
    assert demo_ingest.load(runtime, ctx) == {}
    assert sessions(runtime) == len(first)

    report = owner.get(f"{PAGES}/{first['imaging']}")
    assert "SOP Class is ultrasound" in report.text and "Demo^Patient" not in report.text
    review = owner.get(f"{PAGES}/{first['imaging']}/quarantine")
    assert "30 frames" in review.text
    (img,) = re.findall(r'<img src="([^"]+preview\.png)"', review.text)
    assert owner.get(img).status_code == 200  # the JPEG ultrasound decodes here
    meta = owner.get("/projects/alpha/datasets/imaging/metadata")
    assert "18 rows" in meta.text and "P00001" not in meta.text  # patient IDs are pseudonymised
    anonymity = owner.get("/projects/alpha/datasets/clinical-visits/anonymity")
    assert "<dt>Quasi-identifiers</dt><dd>age, sex, site</dd>" in anonymity.text
    assert "l-diversity of diagnosis" in anonymity.text
    if "sleep-recordings" in first:
        assert "<dt>Stored</dt><dd>4</dd>" in owner.get(f"{PAGES}/{first['sleep-recordings']}").text
