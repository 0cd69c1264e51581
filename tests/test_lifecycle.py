"""Retention enforced: the lifecycle run crypto-shreds datasets whose DMP date has come, warns about
those expiring soon, is safe to kill at any point, and runs daily inside the server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from dmp_helpers import dataset, days, plan, put
from sanctum.datasets.fsck import cleanup_orphans
from sanctum.db.models import AuditEvent, Dataset, DatasetVersion, VersionFile
from sanctum.dmp import lifecycle
from sanctum.errors import SanctumError

API = "/api/v1/projects/alpha/datasets"


def make(client, h, name: str, files: dict[str, bytes]) -> None:
    assert client.post(API, json={"name": name, "kind": "files"}, headers=h).status_code == 201
    assert client.post(f"{API}/{name}/versions", headers=h).status_code == 201
    for path, body in files.items():
        assert client.put(f"{API}/{name}/versions/1/files/{path}", content=body, headers=h).status_code == 201
    assert client.post(f"{API}/{name}/versions/1/commit", headers=h).status_code == 200


def blobs_of(runtime, name: str) -> list[tuple[str, bytes]]:
    """(blob id, plaintext) of every file of the dataset, decrypted with its key from the catalog."""
    with runtime.db.session(write=False) as db:
        ds = db.scalar(select(Dataset).where(Dataset.name == name))
        key = runtime.keyring.dataset_key(db, ds)
        ids = db.scalars(
            select(VersionFile.blob_id)
            .join(DatasetVersion, DatasetVersion.id == VersionFile.version_id)
            .where(DatasetVersion.dataset_id == ds.id)
            .order_by(VersionFile.path)
        ).all()
    return [(b, b"".join(runtime.store.open_range(b, key))) for b in ids]


def row(runtime, dataset_id: int) -> Dataset:
    with runtime.db.session(write=False) as db:
        return db.get(Dataset, dataset_id)


def ids(runtime) -> dict[str, int]:
    with runtime.db.session(write=False) as db:
        return dict(db.execute(select(Dataset.name, Dataset.id)).all())


def shredded(runtime, dataset_id: int, blob_ids: list[str]) -> None:
    """Fully erased: no key, no name, no manifest, and nothing in the catalog can open its blobs."""
    ds = row(runtime, dataset_id)
    assert ds.wrapped_key is None and ds.shredded_at is not None and ds.name == f"shredded-{dataset_id}"
    with runtime.db.session(write=False) as db:
        assert not db.scalars(
            select(VersionFile.id)
            .join(DatasetVersion, DatasetVersion.id == VersionFile.version_id)
            .where(DatasetVersion.dataset_id == dataset_id)
        ).all()
        with pytest.raises(SanctumError):
            runtime.keyring.dataset_key(db, db.get(Dataset, dataset_id))
    assert blob_ids


def intact(runtime, name: str, expected: dict[str, bytes]) -> None:
    assert [data for _, data in blobs_of(runtime, name)] == [expected[p] for p in sorted(expected)]


def audit(runtime, action: str) -> list[AuditEvent]:
    with runtime.db.session(write=False) as db:
        return list(
            db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))
        )


FILES = {"a.csv": b"id,x\n1,2\n", "notes/b.txt": b"synthetic notes " * 1000}


def test_the_run_shreds_what_expired_and_warns_about_what_expires_soon(client, world, runtime) -> None:
    h = world.h["owner"]
    for name in ("expired", "soon", "later", "free"):
        make(client, h, name, FILES)
    document = plan(
        dataset("expired", personal="yes", until=days(-2)),
        dataset("soon", until=days(10)),
        dataset("later", until=days(200)),
    )
    assert put(client, h, document, confirm_shred=True).status_code == 201
    doomed = [b for b, _ in blobs_of(runtime, "expired")]
    backup = runtime.settings.data_dir / "backup-of-a-blob"
    shutil.copyfile(runtime.store.path(doomed[0]), backup)  # a backup taken before the erasure
    number = ids(runtime)["expired"]

    result = lifecycle.run(runtime)
    assert [s["dataset"] for s in result.shredded] == ["expired"] and result.failed == []
    assert [(w["dataset"], w["days_left"]) for w in result.warned] == [("soon", 10)]
    shredded(runtime, number, doomed)
    assert not any(runtime.store.exists(b) for b in doomed)  # housekeeping after the commit
    assert backup.read_bytes()[:1]  # the backup still exists, and nothing can open it now
    for name in ("soon", "later", "free"):
        intact(runtime, name, FILES)
    assert client.get(f"{API}/expired", headers=h).status_code == 404
    (event,) = audit(runtime, "dmp.retention.shred")
    assert event.actor_email == lifecycle.ACTOR and json.loads(event.details)["available_until"] == days(-2)
    assert [e.target for e in audit(runtime, "dataset.shred")] == ["expired"]
    (warning,) = audit(runtime, "dmp.retention.warn")
    assert warning.target == f"soon until {days(10)}" and warning.project_name == "alpha"
    status = client.get("/api/v1/projects/alpha/dmp/status", headers=h).json()
    assert status["overdue"] == [] and [i["dataset"] for i in status["expiring_soon"]] == ["soon"]

    again = lifecycle.run(runtime)  # nothing new: no second shred, no second warning
    assert again.shredded == [] and again.warned == [] and again.failed == []
    assert len(audit(runtime, "dmp.retention.warn")) == 1
    # The day comes for 'soon'; a moved date is a new warning.
    assert (
        put(client, h, plan(dataset("soon", until=days(20)), dataset("later", until=days(200)))).status_code
        == 201
    )
    assert [w["dataset"] for w in lifecycle.run(runtime).warned] == ["soon"]
    later = lifecycle.run(runtime, on=date.fromisoformat(days(20)))
    assert [s["dataset"] for s in later.shredded] == ["soon"]


CRASHING_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from sanctum.api.runtime import Runtime
    from sanctum.config import load_settings
    from sanctum.datasets import shred
    from sanctum.dmp import lifecycle

    where = sys.argv[3]
    runtime = Runtime.start(load_settings(sys.argv[1], database_url=sys.argv[2], lifecycle_interval_hours=0))
    forget, delete, seen = shred._forget_manifests, runtime.store.delete, []

    def forget_then_die(session, dataset_ids):
        forget(session, dataset_ids)
        seen.append(dataset_ids)
        if where == "inside" and len(seen) == 2:
            session.flush()  # the second dataset's key is gone in this transaction: die before it commits
            os.kill(os.getpid(), signal.SIGKILL)

    def delete_then_die(blob_id):
        if where == "after_commit":
            os.kill(os.getpid(), signal.SIGKILL)  # the first dataset committed; its files not yet removed
        return delete(blob_id)

    shred._forget_manifests = forget_then_die
    runtime.store.delete = delete_then_die
    lifecycle.run(runtime)
    """
)


@pytest.mark.parametrize("where", ["inside", "after_commit"])
def test_a_run_killed_in_the_middle_leaves_each_dataset_intact_or_fully_shredded(
    client, world, runtime, settings, tmp_path, where
) -> None:
    h = world.h["owner"]
    make(client, h, "first", FILES)
    make(client, h, "second", {"c.bin": os.urandom(3 * 1024 * 1024 + 5)})
    second_files = {"c.bin": blobs_of(runtime, "second")[0][1]}
    assert (
        put(
            client,
            h,
            plan(dataset("first", until=days(-1)), dataset("second", until=days(-1))),
            confirm_shred=True,
        ).status_code
        == 201
    )
    first_blobs = [b for b, _ in blobs_of(runtime, "first")]
    numbers = ids(runtime)
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_RUN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANCTUM_")}
    done = subprocess.run(
        [sys.executable, str(script), str(settings.data_dir), settings.resolved_database_url, where],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    # The first dataset is gone whole; the second was not touched (its transaction never committed).
    shredded(runtime, numbers["first"], first_blobs)
    intact(runtime, "second", second_files)
    assert [e.target for e in audit(runtime, "dataset.shred")] == ["first"]
    if where == "after_commit":
        # Its files outlived the crash, as noise: no key in the catalog opens them, and the start-up
        # cleanup removes them as orphans.
        assert all(runtime.store.exists(b) for b in first_blobs)
        with runtime.db.session(write=False) as db:
            assert cleanup_orphans(db, runtime.store, min_age_s=0) == len(first_blobs)
    # The next scheduled run (here the real command) finishes the job.
    cli = shutil.which("sanctum", path=os.path.dirname(sys.executable))
    assert cli is not None
    result = subprocess.run(
        [cli, "lifecycle", "run", "--data-dir", str(settings.data_dir), "--json"],
        env={**env, "SANCTUM_DATABASE_URL": settings.resolved_database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [s["dataset"] for s in report["shredded"]] == ["second"] and report["failed"] == []
    assert row(runtime, numbers["second"]).wrapped_key is None


def test_the_server_runs_the_lifecycle_in_a_thread_it_stops(client, world, runtime, app) -> None:
    make(client, world.h["owner"], "expired", FILES)
    number = ids(runtime)["expired"]
    put(client, world.h["owner"], plan(dataset("expired", until=days(-1))), confirm_shred=True)
    assert app.state.lifecycle is not None and app.state.lifecycle.alive  # started by the app's lifespan
    scheduler = lifecycle.LifecycleScheduler(runtime, interval_s=3600, first_delay_s=0)
    scheduler.start()
    deadline = time.monotonic() + 60
    while scheduler.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.stop()
    assert scheduler.runs == 1 and not scheduler.alive
    assert row(runtime, number).wrapped_key is None
    # An app stops the thread it started when it shuts down; with 0 hours it starts none (the
    # scheduled command alone runs it).
    with TestClient(app):
        inner = app.state.lifecycle
        assert inner is not None and inner.alive
    assert not inner.alive
    runtime.settings.lifecycle_interval_hours = 0
    with TestClient(app):
        assert app.state.lifecycle is None
