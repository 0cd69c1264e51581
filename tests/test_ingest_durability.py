"""An ingest batch's blobs are durable before the catalog references them (real catalog on SQLite
and PostgreSQL, real store, real files): written as one blob batch, synced once, then committed.
A failed sync stores nothing; a server killed between the writes and the commit leaves only
unreferenced blobs, which start-up cleanup removes, and the batch sent again is stored once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ingest_helpers import dicom_bytes, tar_body
from sanctum.datasets.fsck import check, cleanup_orphans
from sanctum.db.models import DatasetVersion, VersionFile
from sanctum.ingest import batches
from sanctum.ingest.models import IngestSource
from sanctum.store import batch as batch_module

BASE = "/api/v1/projects/alpha/ingests"
ROOT = Path(__file__).resolve().parents[1]


def start(client, h) -> int:
    r = client.post(BASE, json={"dataset": "scans"}, headers=h)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def send(client, h, number: int, files: dict[str, bytes]):
    return client.post(f"{BASE}/{number}/batches", content=tar_body(files), headers=h)


def dicoms(count: int) -> dict[str, bytes]:
    return {f"p/{i}.dcm": dicom_bytes(i % 3, i)[0] for i in range(count)}


def recorded(runtime) -> tuple[int, int, int]:
    """(source records, version file rows, draft file count)."""
    with runtime.db.session(write=False) as db:
        return (
            db.scalar(sa.select(sa.func.count()).select_from(IngestSource)) or 0,
            db.scalar(sa.select(sa.func.count()).select_from(VersionFile)) or 0,
            db.scalar(sa.select(sa.func.coalesce(sa.func.sum(DatasetVersion.file_count), 0))) or 0,
        )


@pytest.mark.parametrize("count", [3, batch_module.SYNCFS_MIN_BLOBS + 4])
def test_every_blob_is_durable_before_the_commit_that_references_it(
    client, world, runtime, monkeypatch, count
) -> None:
    synced: set[Path] = set()
    syncfs_calls: list[Path] = []
    real_fsync, real_syncfs = os.fsync, batch_module._syncfs

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.add(Path(os.readlink(f"/proc/self/fd/{fd}")))

    def syncfs(fd: int) -> None:
        real_syncfs(fd)
        syncfs_calls.append(Path(os.readlink(f"/proc/self/fd/{fd}")))

    seen_at_commit: list[tuple[list[str], set[Path], list[Path]]] = []
    real_commit = batches._commit

    def commit(session, ctx, plan, sources):
        blobs = [s.blob.blob_id for s in sources if s.blob is not None]
        seen_at_commit.append((blobs, set(synced), list(syncfs_calls)))
        return real_commit(session, ctx, plan, sources)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(batch_module, "_syncfs", syncfs)
    monkeypatch.setattr(batches, "_commit", commit)
    h = world.h["owner"]
    number = start(client, h)
    r = send(client, h, number, dicoms(count))
    assert r.status_code == 200, r.text
    assert [o["outcome"] for o in r.json()["outcomes"]] == ["stored"] * count
    ((blobs, fsynced, syncfs_seen),) = seen_at_commit
    assert len(blobs) == count
    if count >= batch_module.SYNCFS_MIN_BLOBS and batch_module.syncfs_available():
        assert syncfs_seen == [runtime.store.root]  # one syncfs of the store's filesystem
    else:
        assert syncfs_seen == []
        assert {runtime.store.path(b) for b in blobs} <= fsynced
        assert {runtime.store.path(b).parent for b in blobs} <= fsynced
    assert recorded(runtime) == (count, count, count)


def test_a_failed_sync_stores_nothing_and_the_batch_can_be_sent_again(
    client, world, runtime, monkeypatch
) -> None:
    def broken(*_args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(batch_module, "_syncfs", broken)
    monkeypatch.setattr(batch_module, "_fsync_file", broken)
    h = world.h["owner"]
    number = start(client, h)
    for files in (dicoms(2), dicoms(batch_module.SYNCFS_MIN_BLOBS)):  # both ways of syncing
        r = send(client, h, number, files)
        assert r.status_code == 507, r.text
        error = r.json()["error"]
        assert error["code"] == "store_error"
        assert error["message"] == "the data store could not write the files; nothing was stored"
        assert runtime.store.stats()[0] == 0 and recorded(runtime) == (0, 0, 0)
    monkeypatch.undo()
    files = dicoms(batch_module.SYNCFS_MIN_BLOBS)
    r = send(client, h, number, files)
    assert [o["outcome"] for o in r.json()["outcomes"]] == ["stored"] * len(files)
    assert runtime.store.stats()[0] == len(files) and recorded(runtime)[0] == len(files)


CHILD = """
import os, signal, sys
from pathlib import Path
from sanctum.access.permissions import Permission
from sanctum.access.policy import Principal
from sanctum.api.runtime import Runtime
from sanctum.config import load_settings
from sanctum.ingest import batches
from sanctum.projects import service as projects
from sanctum.store import batch as batch_module

data_dir, url, user_id, email, number, folder, when = sys.argv[1:]


class Inline:
    # the worker pool is not what this test is about: de-identify in this process
    size = 1

    def run(self, fn, items, dask=False):
        for item in items:
            yield fn(item)


def die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


batches.workers_for = lambda runtime: Inline()
if when == "before the sync":
    batch_module.BlobBatch.sync = die
else:
    batches._commit = die
runtime = Runtime.start(load_settings(Path(data_dir), database_url=url))
principal = Principal(
    user_id=int(user_id), email=email, is_admin=False, can_create_projects=True,
    token_id=0, token_kind="login",
)
with runtime.db.session(write=False) as session:
    ctx = projects.load(session, principal, "alpha", Permission.DATA_IMPORT)
files = [(p.name, p.read_bytes()) for p in sorted(Path(folder).iterdir())]
batches.ingest_files(runtime, ctx, None, int(number), files)
print("not killed")
"""


@pytest.mark.parametrize("when", ["before the sync", "after the sync"])
def test_a_server_killed_between_the_writes_and_the_commit_leaves_only_orphans(
    client, world, runtime, settings, tmp_path, when
) -> None:
    h = world.h["owner"]
    number = start(client, h)
    files = dicoms(batch_module.SYNCFS_MIN_BLOBS + 2)
    folder = tmp_path / "batch"
    folder.mkdir()
    for name, data in files.items():
        (folder / name.replace("/", "_")).write_bytes(data)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    args = [
        str(settings.data_dir),
        settings.resolved_database_url,
        str(world.owner.id),
        world.owner.email,
        str(number),
        str(folder),
        when,
    ]
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr

    # the dead server wrote every blob and recorded none of them
    store = runtime.store
    orphans = sorted(store.iter_blob_ids())
    assert len(orphans) == len(files) and recorded(runtime) == (0, 0, 0)
    with runtime.db.session(write=False) as db:
        report = check(db, store, runtime.keyring)
        assert {p.kind for p in report.problems} == {"orphan_blob"} and len(report.problems) == len(files)
        # start-up cleanup keeps young blobs (an upload may be in flight), removes these once old
        assert cleanup_orphans(db, store) == 0
        old = time.time() - 7200
        for blob_id in orphans:
            os.utime(store.path(blob_id), (old, old))
        assert cleanup_orphans(db, store) == len(files)
    assert store.stats()[0] == 0 and store.cleanup_temp() == 0

    # the client's retry: every file stored exactly once
    r = send(client, h, number, {name.replace("/", "_"): data for name, data in files.items()})
    assert [o["outcome"] for o in r.json()["outcomes"]] == ["stored"] * len(files)
    assert store.stats()[0] == len(files) and recorded(runtime) == (len(files),) * 3
    report = client.post(f"{BASE}/{number}/finish", headers=h).json()
    assert report["counts"]["stored"] == len(files) and report["counts"]["files"] == len(files)
