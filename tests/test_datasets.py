"""Encrypted datasets through the API: versions, files, roles on data, bad input, tampering."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from sanctum.db.models import AuditEvent, Dataset, VersionFile

BASE = "/api/v1/projects/alpha/datasets"


def make_dataset(client, h, name="scans", kind="files", project="alpha"):
    r = client.post(f"/api/v1/projects/{project}/datasets", json={"name": name, "kind": kind}, headers=h)
    assert r.status_code == 201, r.text
    return r.json()


def new_version(client, h, dataset="scans", project="alpha"):
    r = client.post(f"/api/v1/projects/{project}/datasets/{dataset}/versions", headers=h)
    assert r.status_code == 201, r.text
    return r.json()["number"]


def put(client, h, path, body, dataset="scans", version=1, project="alpha"):
    return client.put(
        f"/api/v1/projects/{project}/datasets/{dataset}/versions/{version}/files/{path}",
        content=body,
        headers=h,
    )


def committed(client, h, files: dict[str, bytes], dataset="scans", project="alpha", kind="files"):
    if client.get(f"/api/v1/projects/{project}/datasets/{dataset}", headers=h).status_code == 404:
        make_dataset(client, h, dataset, kind=kind, project=project)
    number = new_version(client, h, dataset, project)
    for path, body in files.items():
        r = put(client, h, path, body, dataset, number, project)
        assert r.status_code == 201, r.text
    r = client.post(f"/api/v1/projects/{project}/datasets/{dataset}/versions/{number}/commit", headers=h)
    assert r.status_code == 200, r.text
    return number


def events(runtime, prefix):
    with runtime.db.session(write=False) as db:
        return list(
            db.scalars(
                sa.select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.seq)
            ).all()
        )


def test_upload_commit_list_download(client, world, runtime) -> None:
    h = world.h["owner"]
    make_dataset(client, h)
    assert new_version(client, h) == 1
    body = b"MRI " * 100_000
    r = put(client, h, "sub-01/anat/T1w.nii", body)
    assert r.status_code == 201
    assert r.json() == {
        "path": "sub-01/anat/T1w.nii",
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    assert put(client, h, "empty.txt", b"").status_code == 201  # zero-byte files are files
    # A draft is invisible to readers of versions.
    assert client.get(f"{BASE}/scans/versions", headers=h).json() == []
    r = client.post(f"{BASE}/scans/versions/1/commit", headers=h)
    assert r.status_code == 200 and r.json()["state"] == "committed" and r.json()["file_count"] == 2
    manifest = client.get(f"{BASE}/scans/versions/1/files", headers=world.h["scientist"]).json()
    assert [f["path"] for f in manifest] == ["empty.txt", "sub-01/anat/T1w.nii"]
    r = client.get(f"{BASE}/scans/versions/1/files/sub-01/anat/T1w.nii", headers=h)
    assert (
        r.status_code == 200
        and r.content == body
        and r.headers["etag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    )
    r = client.get(f"{BASE}/scans/versions/1/files/empty.txt", headers=h)
    assert r.status_code == 200 and r.content == b""
    listed = client.get(BASE, headers=world.h["auditor"]).json()
    assert listed[0]["latest_version"] == 1 and listed[0]["latest_size"] == len(body)
    assert [e.action for e in events(runtime, "dataset.")][:4] == [
        "dataset.create",
        "dataset.version.create",
        "dataset.import",
        "dataset.import",
    ]
    assert events(runtime, "dataset.download")


def test_range_downloads(client, world) -> None:
    h = world.h["owner"]
    body = bytes(range(256)) * 9000
    committed(client, h, {"blob.bin": body})
    url = f"{BASE}/scans/versions/1/files/blob.bin"
    for header, expected in (
        ("bytes=0-9", body[:10]),
        ("bytes=100000-", body[100000:]),
        ("bytes=-5", body[-5:]),
        ("bytes=1048570-1048580", body[1048570:1048581]),
    ):
        r = client.get(url, headers={**h, "Range": header})
        assert r.status_code == 206 and r.content == expected, header
        assert r.headers["content-range"].endswith(f"/{len(body)}")
    assert client.get(url, headers={**h, "Range": f"bytes={len(body)}-"}).status_code == 416
    assert client.get(url, headers={**h, "Range": "bytes=abc"}).status_code == 416


def test_committed_versions_are_immutable(client, world) -> None:
    h = world.h["owner"]
    committed(client, h, {"a.txt": b"one"})
    r = put(client, h, "b.txt", b"two")
    assert r.status_code == 409 and r.json()["error"]["code"] == "immutable"
    assert client.post(f"{BASE}/scans/versions/1/commit", headers=h).status_code == 409
    assert committed(client, h, {"a.txt": b"changed"}) == 2


def test_empty_version_cannot_be_committed(client, world) -> None:
    h = world.h["owner"]
    make_dataset(client, h)
    new_version(client, h)
    r = client.post(f"{BASE}/scans/versions/1/commit", headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "empty_version"


def test_scientists_read_through_queries_not_downloads(client, world, runtime) -> None:
    committed(client, world.h["owner"], {"a.txt": b"secret"})
    s = world.h["scientist"]
    r = client.get(f"{BASE}/scans/versions/1/files/a.txt", headers=s)
    assert r.status_code == 403 and "airlock" in r.json()["error"]["message"]
    r = client.post(f"{BASE}/scans/versions", headers=s)
    assert r.status_code == 403 and "airlock" in r.json()["error"]["message"]
    assert put(client, s, "b.txt", b"outside data").status_code == 403
    assert client.post(BASE, json={"name": "mine", "kind": "files"}, headers=s).status_code == 403
    assert client.get(f"{BASE}/scans/versions/1/files", headers=s).status_code == 200
    for name in ("checker", "auditor"):
        assert client.get(f"{BASE}/scans/versions/1/files/a.txt", headers=world.h[name]).status_code == 403
    assert client.get(f"{BASE}/scans", headers=world.h["other_owner"]).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        # Percent-encoded, so the HTTP client does not normalise them away before they reach the server.
        "%2E%2E/escape.txt",
        "a/%2E%2E/%2E%2E/b",
        "a/%2E/b",
        "a//b",
        "%2Fetc%2Fpasswd",
        "a%00b",
        "a%5Cb",
        "a/" + "x" * 256,
        "/".join(["d"] * 600),
        "tab%09name",
    ],
)
def test_bad_paths_are_refused(client, world, path) -> None:
    h = world.h["owner"]
    make_dataset(client, h)
    new_version(client, h)
    r = put(client, h, path, b"x")
    assert r.status_code in (404, 422), (path, r.status_code, r.text)
    with_files = client.get(f"{BASE}/scans/versions/1/files", headers=h).json()
    assert with_files == []


def test_duplicate_path_keeps_the_first_and_no_orphan_blob(client, world, runtime) -> None:
    h = world.h["owner"]
    make_dataset(client, h)
    new_version(client, h)
    assert put(client, h, "a.txt", b"first").status_code == 201
    count, _ = runtime.store.stats()
    r = put(client, h, "a.txt", b"second")
    assert r.status_code == 409 and r.json()["error"]["code"] == "duplicate_path"
    assert runtime.store.stats()[0] == count
    assert client.post(f"{BASE}/scans/versions/1/commit", headers=h).status_code == 200
    assert client.get(f"{BASE}/scans/versions/1/files/a.txt", headers=h).content == b"first"


def test_tampered_blob_is_detected(client, world, runtime) -> None:
    h = world.h["owner"]
    committed(client, h, {"a.txt": b"patient data " * 1000})
    with runtime.db.session(write=False) as db:
        blob_id = db.scalar(sa.select(VersionFile.blob_id))
    path = runtime.store.path(blob_id)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    r = client.get(f"{BASE}/scans/versions/1/files/a.txt", headers=h)
    assert r.status_code == 500 and r.json()["error"]["code"] == "integrity_error"
    assert "patient data" not in r.text


def test_disk_full_stores_nothing(client, world, runtime, monkeypatch) -> None:
    from sanctum.store import DiskFull

    h = world.h["owner"]
    make_dataset(client, h)
    new_version(client, h)

    def full(*args, **kwargs):
        raise DiskFull("No space left on device (test)")

    monkeypatch.setattr(runtime.store, "put_stream", full)
    r = put(client, h, "a.txt", b"x" * 1000)
    assert r.status_code == 507 and r.json()["error"]["code"] == "disk_full"
    assert "test" not in r.json()["error"]["message"]  # server details stay in the log
    assert client.get(f"{BASE}/scans/versions/1/files", headers=h).json() == []


def test_upload_larger_than_the_json_body_limit_streams(client, world, settings) -> None:
    h = world.h["owner"]
    make_dataset(client, h)
    new_version(client, h)
    body = b"z" * (settings.max_body_bytes * 3)
    assert put(client, h, "big.bin", body).status_code == 201


def test_upload_over_the_file_limit_is_refused(app, world, runtime) -> None:
    from fastapi.testclient import TestClient

    runtime.settings.max_upload_bytes = 10_000
    with TestClient(app) as client:
        h = world.h["owner"]
        make_dataset(client, h)
        new_version(client, h)
        r = put(client, h, "big.bin", b"z" * 20_000)
        assert r.status_code == 413
        assert runtime.store.stats()[0] == 0


def test_dataset_names_and_kinds(client, world) -> None:
    h = world.h["owner"]
    for name in ("Bad", "a/b", "a.b", "../x", "", "x" * 70, "a--b", "-a", "a-"):
        assert client.post(BASE, json={"name": name}, headers=h).status_code == 422, name
    assert client.post(BASE, json={"name": "ok", "kind": "images"}, headers=h).status_code == 422
    make_dataset(client, h, "ok")
    assert client.post(BASE, json={"name": "ok"}, headers=h).status_code == 409


# --------------------------------------------------------------------------- tables and queries

CSV = b"patient,age,site\np1,34,north\np2,51,south\np3,47,north\n"


def test_table_upload_and_query(client, world, runtime) -> None:
    h = world.h["owner"]
    committed(client, h, {"visits.csv": CSV}, dataset="visits", kind="table")
    version = client.get(f"{BASE}/visits/versions/1", headers=h).json()
    assert version["row_count"] == 3 and [c["name"] for c in version["table_schema"]] == [
        "patient",
        "age",
        "site",
    ]
    assert [f["path"] for f in client.get(f"{BASE}/visits/versions/1/files", headers=h).json()] == [
        "table.parquet"
    ]
    sql = "SELECT site, count(*) AS n, avg(age) AS mean_age FROM visits GROUP BY site ORDER BY site"
    r = client.post("/api/v1/projects/alpha/query", json={"sql": sql}, headers=world.h["scientist"])
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [["north", 2, 40.5], ["south", 1, 51.0]]
    assert r.json()["row_limit"] == 1000
    assert events(runtime, "dataset.query")[-1].actor_email == "scientist@example.org"


def test_scientist_rows_are_capped(client, world) -> None:
    h = world.h["owner"]
    rows = "\n".join(f"p{i},{i % 90},x" for i in range(50))
    committed(client, h, {"v.csv": b"patient,age,site\n" + rows.encode()}, dataset="visits", kind="table")
    assert (
        client.patch("/api/v1/projects/alpha/settings", json={"query_row_limit": 10}, headers=h).status_code
        == 200
    )
    r = client.post(
        "/api/v1/projects/alpha/query", json={"sql": "SELECT * FROM visits"}, headers=world.h["scientist"]
    )
    assert r.json()["row_count"] == 10 and r.json()["truncated"] is True
    r = client.post("/api/v1/projects/alpha/query", json={"sql": "SELECT * FROM visits"}, headers=h)
    assert r.json()["row_count"] == 50 and r.json()["truncated"] is False
    assert (
        client.patch(
            "/api/v1/projects/alpha/settings", json={"query_row_limit": 5}, headers=world.h["scientist"]
        ).status_code
        == 403
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "COPY (SELECT 1) TO '/tmp/sanctum-leak.csv'",
        "ATTACH '/tmp/sanctum-x.db'",
        "INSTALL httpfs",
        "SELECT 1; SELECT 2",
    ],
)
def test_query_cannot_reach_outside(client, world, sql) -> None:
    committed(client, world.h["owner"], {"v.csv": CSV}, dataset="visits", kind="table")
    r = client.post("/api/v1/projects/alpha/query", json={"sql": sql}, headers=world.h["scientist"])
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_query"


def test_other_projects_tables_are_invisible(client, world) -> None:
    committed(
        client, world.h["other_owner"], {"v.csv": CSV}, dataset="beta-visits", project="beta", kind="table"
    )
    for sql in ("SELECT * FROM beta_visits", "SELECT * FROM beta__beta_visits"):
        r = client.post("/api/v1/projects/alpha/query", json={"sql": sql}, headers=world.h["owner"])
        assert r.status_code == 422, sql
    r = client.post("/api/v1/projects/alpha/query", json={"sql": "SELECT 1"}, headers=world.h["checker"])
    assert r.status_code == 403


def test_bad_table_uploads(client, world) -> None:
    h = world.h["owner"]
    make_dataset(client, h, "visits", kind="table")
    new_version(client, h, "visits")
    for body in (b"", b"\xff\xfe\x00bad", b"a,a\n1,2\n"):
        r = put(client, h, "t.csv", body, dataset="visits")
        assert r.status_code == 422, body
    assert put(client, h, "t.csv", CSV, dataset="visits").status_code == 201
    assert put(client, h, "u.csv", CSV, dataset="visits").status_code == 409  # one table per version


# --------------------------------------------------------------------------- sharing and shredding


def test_share_without_copying(client, world, runtime) -> None:
    h, target = world.h["owner"], world.h["other_owner"]
    committed(client, h, {"v.csv": CSV}, dataset="visits", kind="table")
    blobs_before = runtime.store.stats()
    r = client.post(f"{BASE}/visits/shares", json={"project": "beta", "access": "read"}, headers=h)
    assert r.status_code == 201
    share = r.json()
    # Not visible in beta before acceptance.
    assert client.get("/api/v1/projects/beta/datasets", headers=target).json() == []
    assert client.get("/api/v1/projects/beta/datasets/alpha.visits", headers=target).status_code == 404
    assert client.post(f"/api/v1/projects/alpha/shares/{share['id']}/accept", headers=h).status_code == 404
    r = client.post(f"/api/v1/projects/beta/shares/{share['id']}/accept", headers=target)
    assert r.status_code == 200 and r.json()["state"] == "accepted"
    listed = client.get("/api/v1/projects/beta/datasets", headers=target).json()
    assert [(d["name"], d["project"], d["access"]) for d in listed] == [("alpha.visits", "alpha", "read")]
    r = client.post(
        "/api/v1/projects/beta/query", json={"sql": "SELECT count(*) FROM alpha__visits"}, headers=target
    )
    assert r.json()["rows"] == [[3]]
    r = client.get(
        "/api/v1/projects/beta/datasets/alpha.visits/versions/1/files/table.parquet", headers=target
    )
    assert r.status_code == 200 and r.content[:4] == b"PAR1"
    assert (
        client.post("/api/v1/projects/beta/datasets/alpha.visits/versions", headers=target).status_code == 403
    )
    assert runtime.store.stats() == blobs_before  # sharing copied nothing
    # Revoking cuts access at once.
    downloads = [(e.project_name, e.actor_email) for e in events(runtime, "dataset.download")]
    assert ("alpha", "other-owner@example.org") in downloads  # the owner sees reads through the share
    assert client.delete(f"/api/v1/projects/alpha/shares/{share['id']}", headers=h).status_code == 204
    assert client.get("/api/v1/projects/beta/datasets", headers=target).json() == []
    r = client.post(
        "/api/v1/projects/beta/query", json={"sql": "SELECT count(*) FROM alpha__visits"}, headers=target
    )
    assert r.status_code == 422
    assert (
        client.get(
            "/api/v1/projects/beta/datasets/alpha.visits/versions/1/files/table.parquet", headers=target
        ).status_code
        == 404
    )
    both = {e.project_name for e in events(runtime, "share.")}
    assert both == {"alpha", "beta"}


def test_share_rules(client, world) -> None:
    h = world.h["owner"]
    committed(client, h, {"a.txt": b"x"})
    assert client.post(f"{BASE}/scans/shares", json={"project": "alpha"}, headers=h).status_code == 422
    assert client.post(f"{BASE}/scans/shares", json={"project": "nope"}, headers=h).status_code == 404
    assert (
        client.post(
            f"{BASE}/scans/shares", json={"project": "beta", "access": "admin"}, headers=h
        ).status_code
        == 422
    )
    assert (
        client.post(
            f"{BASE}/scans/shares", json={"project": "beta"}, headers=world.h["scientist"]
        ).status_code
        == 403
    )
    share = client.post(f"{BASE}/scans/shares", json={"project": "beta"}, headers=h).json()
    assert client.post(f"{BASE}/scans/shares", json={"project": "beta"}, headers=h).status_code == 409
    r = client.post(f"/api/v1/projects/beta/shares/{share['id']}/decline", headers=world.h["other_owner"])
    assert r.json()["state"] == "declined"
    assert client.get("/api/v1/projects/beta/datasets", headers=world.h["other_owner"]).json() == []


def test_write_share_lets_the_target_add_versions(client, world) -> None:
    h, target = world.h["owner"], world.h["other_owner"]
    committed(client, h, {"a.txt": b"x"})
    share = client.post(f"{BASE}/scans/shares", json={"project": "beta", "access": "write"}, headers=h).json()
    client.post(f"/api/v1/projects/beta/shares/{share['id']}/accept", headers=target)
    number = committed(client, target, {"b.txt": b"from beta"}, dataset="alpha.scans", project="beta")
    assert number == 2
    r = client.get(f"{BASE}/scans/versions/2/files/b.txt", headers=h)
    assert r.content == b"from beta"


def test_shred_destroys_the_key(client, world, runtime, tmp_path) -> None:
    h = world.h["owner"]
    committed(client, h, {"a.txt": b"to be forgotten"})
    with runtime.db.session(write=False) as db:
        blob_id = db.scalar(sa.select(VersionFile.blob_id))
    backup = tmp_path / "backup.blob"
    backup.write_bytes(runtime.store.path(blob_id).read_bytes())
    r = client.delete(f"{BASE}/scans", params={"confirm": "wrong"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "confirm"
    assert client.delete(f"{BASE}/scans", headers=world.h["scientist"]).status_code == 403
    assert client.delete(f"{BASE}/scans", params={"confirm": "scans"}, headers=h).status_code == 204
    assert client.get(f"{BASE}/scans", headers=h).status_code == 404
    assert not runtime.store.exists(blob_id)
    with runtime.db.session(write=False) as db:
        shredded = db.scalar(sa.select(Dataset))
        assert shredded.wrapped_key is None and shredded.shredded_at is not None
        assert shredded.name == f"shredded-{shredded.id}"
        assert db.scalar(sa.select(sa.func.count()).select_from(VersionFile)) == 0  # paths can identify
    # The backup copy is all that is left, and nothing in the catalog can decrypt it any more.
    from sanctum.store import IntegrityError, SegmentReader, new_data_key

    raw = backup.read_bytes()
    with pytest.raises(IntegrityError):
        list(
            SegmentReader(lambda o, n: raw[o : o + n], len(raw), new_data_key(), blob_id).iter_range(0, None)
        )
    assert events(runtime, "dataset.shred")[-1].target == "scans"
    make_dataset(client, h)  # the name is free again


def test_deleting_a_project_shreds_everything(client, world, runtime) -> None:
    h = world.h["owner"]
    committed(client, h, {"a.txt": b"x"})
    committed(client, h, {"v.csv": CSV}, dataset="visits", kind="table")
    assert client.delete("/api/v1/projects/alpha", params={"confirm": "alph"}, headers=h).status_code == 422
    assert (
        client.delete(
            "/api/v1/projects/alpha", params={"confirm": "alpha"}, headers=world.h["scientist"]
        ).status_code
        == 403
    )
    assert client.delete("/api/v1/projects/alpha", params={"confirm": "alpha"}, headers=h).status_code == 204
    assert client.get("/api/v1/projects/alpha", headers=h).status_code == 404
    assert runtime.store.stats()[0] == 0
    assert events(runtime, "project.delete")


def test_a_draft_can_be_discarded_but_not_a_version(client, world, runtime) -> None:
    h = world.h["owner"]
    make_dataset(client, h)
    new_version(client, h)
    put(client, h, "a.txt", b"abandoned")
    draft = client.get(f"{BASE}/scans/versions/1", headers=h).json()
    assert (draft["state"], draft["file_count"], draft["total_size"]) == ("draft", 1, 9)
    assert client.delete(f"{BASE}/scans/versions/1", headers=world.h["scientist"]).status_code == 403
    assert client.delete(f"{BASE}/scans/versions/1", headers=h).status_code == 204
    assert client.get(f"{BASE}/scans/versions/1", headers=h).status_code == 404
    assert runtime.store.stats()[0] == 0
    number = committed(client, h, {"b.txt": b"kept"})
    r = client.delete(f"{BASE}/scans/versions/{number}", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "immutable"
