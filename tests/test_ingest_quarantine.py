"""The quarantine review against a real catalog, blob store and worker pool (SQLite and PostgreSQL).

What a data owner relies on: a quarantined image is listed with its reason (never a value), its
preview shows the masks, a mask outside the image is refused with nothing stored, a released file
has exactly the masked pixels set to the image's minimum and everything else unchanged, lands in a
new version and in the metadata table, a second decision is refused, a discarded file is gone from
the store, and only data owners of the project reach any of it.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest
import sqlalchemy as sa
from PIL import Image

from ingest_helpers import dicom_bytes, patient_markers, tar_body
from sanctum.datasets.fsck import check
from sanctum.db.models import AuditEvent
from sanctum.ingest.models import IngestSource, QuarantineReview

BASE = "/api/v1/projects/alpha/ingests"


def _ingest(client, h, files: dict[str, bytes], *, finish: bool = True) -> int:
    r = client.post(BASE, json={"dataset": "scans"}, headers=h)
    assert r.status_code == 201, r.text
    number = r.json()["id"]
    r = client.post(f"{BASE}/{number}/batches", content=tar_body(files), headers=h)
    assert r.status_code == 200, r.text
    if finish:
        assert client.post(f"{BASE}/{number}/finish", headers=h).status_code == 200
    return number


@pytest.fixture
def reviewed(client, world, runtime):
    """An ingest of one plain CT and two CTs flagged BurnedInAnnotation = YES, finished."""
    h = world.h["owner"]
    plain, _ = dicom_bytes(1, 0)
    burned, _ = dicom_bytes(1, 1, BurnedInAnnotation="YES")
    other, _ = dicom_bytes(2, 0, BurnedInAnnotation="YES")
    number = _ingest(client, h, {"Quux Zebulon1/a.dcm": plain, "Quux Zebulon1/b.dcm": burned, "c.dcm": other})
    items = client.get(f"{BASE}/{number}/quarantine", headers=h).json()
    return number, items, burned


def test_release_burns_exactly_the_masks_into_a_new_version(client, world, runtime, reviewed) -> None:
    number, items, burned = reviewed
    h = world.h["owner"]
    assert [i["path"] for i in items] == ["Quux Zebulon1/b.dcm", "c.dcm"]
    item = items[0]
    assert item["reasons"] == ["BurnedInAnnotation is YES"] and item["held"] is True
    assert (item["rows"], item["columns"], item["frames"]) == (128, 128, 1)
    assert item["masks"] == [] and item["decision"] is None and item["preview_error"] is None
    listing = str(items)
    assert not any(m in listing for m in patient_markers(1).values())  # reasons name no value

    url = f"{BASE}/{number}/quarantine/{item['id']}"
    for rect in ((0, 0, 10, 4), (100, 120, 28, 8)):
        r = client.post(
            f"{url}/masks", json=dict(zip(("x", "y", "width", "height"), rect, strict=True)), headers=h
        )
        assert r.status_code == 200, r.text
    assert r.json()["masks"] == [[0, 0, 10, 4], [100, 120, 28, 8]]

    # the preview: a PNG of the image with both rectangles black, not cached
    r = client.get(f"{url}/preview.png", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"] == "no-store"
    png = np.asarray(Image.open(io.BytesIO(r.content)))
    assert png.shape == (128, 128)
    assert (png[0:4, 0:10] == 0).all() and (png[120:128, 100:128] == 0).all()
    assert png[40:80, 40:80].max() > 0

    r = client.post(f"{url}/release", headers=h)
    assert r.status_code == 200, r.text
    decision = r.json()
    assert decision["decision"] == "released" and decision["version"] == 2
    assert decision["masks"] == [[0, 0, 10, 4], [100, 120, 28, 8]]

    # the released file: the new version holds it alone; exactly the masked pixels changed
    r = client.get("/api/v1/projects/alpha/datasets/scans/versions/2/files", headers=h)
    assert r.status_code == 200, r.text
    (entry,) = r.json()
    assert entry["path"] == decision["stored_path"]
    r = client.get(f"/api/v1/projects/alpha/datasets/scans/versions/2/files/{entry['path']}", headers=h)
    assert r.status_code == 200
    out = pydicom.dcmread(io.BytesIO(r.content))
    source = pydicom.dcmread(io.BytesIO(burned))
    before, after = source.pixel_array, out.pixel_array
    low = before.min()
    inside = np.zeros(before.shape, dtype=bool)
    inside[0:4, 0:10] = inside[120:128, 100:128] = True
    assert (after[inside] == low).all()
    assert (after[~inside] == before[~inside]).all()
    assert out.BurnedInAnnotation == "NO" and out.PatientIdentityRemoved == "YES"
    assert not any(m.encode() in r.content for m in patient_markers(1).values())

    # the metadata table gained the released instance
    r = client.post(
        "/api/v1/projects/alpha/query",
        json={"sql": "select dataset_version, path from scans_metadata order by dataset_version"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["rows"][-1] == [2, entry["path"]]

    # a second decision, a new mask after it: 409, nothing changes
    assert client.post(f"{url}/release", headers=h).status_code == 409
    assert client.post(f"{url}/discard", headers=h).status_code == 409
    assert (
        client.post(f"{url}/masks", json={"x": 1, "y": 1, "width": 1, "height": 1}, headers=h).status_code
        == 409
    )
    assert client.get(f"{url}/preview.png", headers=h).status_code == 409

    # the report carries the decision with its masks; the audit trail the rectangles
    report = client.get(f"{BASE}/{number}/report", headers=h).json()
    assert report["counts"]["released"] == 1
    review = report["quarantined"][0]["review"]
    assert review["decision"] == "released" and review["masks"] == [[0, 0, 10, 4], [100, 120, 28, 8]]
    assert report["quarantined"][1]["review"] is None
    with runtime.db.session(write=False) as db:
        events = db.execute(
            sa.select(AuditEvent.action, AuditEvent.details)
            .where(AuditEvent.action.like("ingest.quarantine.%"))
            .order_by(AuditEvent.seq)
        ).all()
        assert check(db, runtime.store, runtime.keyring, deep=True).ok
    events = [(a, json.loads(d) if isinstance(d, str) else d) for a, d in events]
    released = [d for a, d in events if a == "ingest.quarantine.release"]
    assert released[0]["masks"] == [[0, 0, 10, 4], [100, 120, 28, 8]]
    assert [d["mask"] for a, d in events if a == "ingest.quarantine.mask"] == [
        [0, 0, 10, 4],
        [100, 120, 28, 8],
    ]


def test_discard_deletes_the_held_file_and_bad_rectangles_are_refused(
    client, world, runtime, reviewed
) -> None:
    number, items, _ = reviewed
    h = world.h["owner"]
    url = f"{BASE}/{number}/quarantine/{items[1]['id']}"
    for bad in (
        {"x": 120, "y": 0, "width": 9, "height": 1},  # past the right edge (128 columns)
        {"x": 0, "y": 128, "width": 1, "height": 1},  # below the last row
        {"x": -1, "y": 0, "width": 5, "height": 5},
        {"x": 0, "y": 0, "width": 0, "height": 5},
        {"x": 0, "y": 0, "width": 5, "height": -2},
    ):
        r = client.post(f"{url}/masks", json=bad, headers=h)
        assert r.status_code == 422, (bad, r.text)
    assert client.post(f"{url}/masks", json={"x": "left"}, headers=h).status_code == 422
    with runtime.db.session(write=False) as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(QuarantineReview)) == 0
        blob = db.scalar(sa.select(IngestSource.blob_id).where(IngestSource.id == items[1]["id"]))
    assert blob is not None and runtime.store.exists(blob)

    r = client.post(f"{url}/discard", headers=h)
    assert r.status_code == 200 and r.json()["decision"] == "discarded"
    assert not runtime.store.exists(blob)
    assert client.post(f"{url}/release", headers=h).status_code == 409
    (after,) = [
        i for i in client.get(f"{BASE}/{number}/quarantine", headers=h).json() if i["id"] == items[1]["id"]
    ]
    assert after["held"] is False and after["decision"]["decision"] == "discarded"
    # no new version came of it
    versions = client.get("/api/v1/projects/alpha/datasets/scans/versions", headers=h).json()
    assert [v["number"] for v in versions] == [1]


def test_decisions_wait_for_the_ingest_to_finish(client, world) -> None:
    h = world.h["owner"]
    burned, _ = dicom_bytes(3, 0, BurnedInAnnotation="YES")
    number = _ingest(client, h, {"x.dcm": burned}, finish=False)
    (item,) = client.get(f"{BASE}/{number}/quarantine", headers=h).json()
    r = client.post(f"{BASE}/{number}/quarantine/{item['id']}/release", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "ingest_open"


def test_only_owners_of_the_project_review(client, world, people, reviewed) -> None:
    number, items, _ = reviewed
    url = f"{BASE}/{number}/quarantine"
    one = f"{url}/{items[0]['id']}"
    calls = [
        ("get", url, None),
        ("get", one, None),
        ("get", f"{one}/preview.png", None),
        ("post", f"{one}/masks", {"x": 0, "y": 0, "width": 1, "height": 1}),
        ("delete", f"{one}/masks", None),
        ("post", f"{one}/release", None),
        ("post", f"{one}/discard", None),
    ]
    expected = {
        "scientist": 403,
        "checker": 403,
        "auditor": 403,
        "outsider": 404,
        "other_owner": 404,
        "admin": 404,
    }
    for who, status in expected.items():
        for method, path, body in calls:
            kwargs = {"json": body} if body is not None else {}
            r = client.request(method.upper(), path, headers=world.h[who], **kwargs)
            assert r.status_code == status, (who, method, path, r.status_code)
    # another project's owner naming their own project does not reach alpha's ingest either
    r = client.get(
        f"/api/v1/projects/beta/ingests/{number}/quarantine/{items[0]['id']}", headers=world.h["other_owner"]
    )
    assert r.status_code == 404
    # a token without the data:import scope is refused even for the owner
    limited = people.headers(world.owner, scopes=["datasets:read"])
    assert client.get(url, headers=limited).status_code == 403
    # nothing was decided by any of it
    assert [i["decision"] for i in client.get(url, headers=world.h["owner"]).json()] == [None, None]


def test_a_release_that_fails_at_commit_changes_nothing(
    client, world, runtime, reviewed, monkeypatch
) -> None:
    """The masked file and the metadata table are written first; if the transaction then fails,
    both blobs are deleted, the held file stays, and the owner can decide again."""
    number, items, _ = reviewed
    h = world.h["owner"]
    url = f"{BASE}/{number}/quarantine/{items[0]['id']}"
    before = runtime.store.stats()[0]
    from sanctum.datasets import catalog

    real_commit = catalog.commit

    def failing(session, ctx, ref, version):
        real_commit(session, ctx, ref, version)
        raise OSError("the database went away")

    monkeypatch.setattr(catalog, "commit", failing)
    with pytest.raises(OSError):
        client.post(f"{url}/release", headers=h)
    monkeypatch.setattr(catalog, "commit", real_commit)
    assert runtime.store.stats()[0] == before
    (item,) = [
        i for i in client.get(f"{BASE}/{number}/quarantine", headers=h).json() if i["id"] == items[0]["id"]
    ]
    assert item["held"] is True and item["decision"] is None
    versions = client.get("/api/v1/projects/alpha/datasets/scans/versions", headers=h).json()
    assert [v["number"] for v in versions] == [1]
    r = client.post(f"{url}/release", headers=h)
    assert r.status_code == 200 and r.json()["version"] == 2
    assert runtime.store.stats()[0] == before + 1  # +2 new (file, metadata table), -1 held
