"""``sanctum ingest`` and ``Client.ingest`` against a live server: resumable, safe on archives, Dask.

The resume test is the real thing: the CLI process is killed with SIGKILL in the middle of an
ingest and run again; every file ends up stored exactly once and none is lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import sqlalchemy as sa

from ingest_helpers import dicom_bytes
from sanctum.accounts.tokens import TokenKind
from sanctum.db.models import VersionFile
from sanctum.ingest.models import IngestSession, IngestSource

SANCTUM = str(Path(sys.executable).with_name("sanctum"))


def _count(runtime, model) -> int:
    with runtime.db.session(write=False) as db:
        return db.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def test_cli_killed_mid_ingest_resumes_and_stores_every_file_exactly_once(
    live_server, world, people, runtime, tmp_path
) -> None:
    export = tmp_path / "export"
    total = 36
    for p in range(3):
        folder = export / f"Zebulon{p}_Quux"
        folder.mkdir(parents=True)
        for i in range(total // 3):
            (folder / f"IMG{i:03}.dcm").write_bytes(dicom_bytes(p, i)[0])
    (export / "shortcut.dcm").symlink_to(tmp_path / "elsewhere.dcm")
    config = tmp_path / "config"
    env = {
        **os.environ,
        "SANCTUM_URL": live_server.url,
        "SANCTUM_TOKEN": people.token(world.owner, kind=TokenKind.LOGIN, hours=1),
        "SANCTUM_CONFIG_DIR": str(config),
    }
    command = [SANCTUM, "ingest", "alpha", "scans", str(export), "--batch-files", "1", "--json"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while _count(runtime, IngestSource) < 4 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    recorded = _count(runtime, IngestSource)
    assert 4 <= recorded < total, f"the CLI was not killed in the middle ({recorded} of {total} recorded)"
    assert len(list((config / "ingest").glob("*.json"))) == 1  # the session to resume

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ingest"] == 1 and report["version"] == 1  # the same session, resumed
    assert report["counts"]["stored"] == total and report["counts"]["duplicate"] == 0
    assert [e["path"] for e in report["errors"]] == ["shortcut.dcm"]
    assert "symbolic link" in report["errors"][0]["reasons"][0]
    assert _count(runtime, IngestSession) == 1 and _count(runtime, IngestSource) == total + 1
    with runtime.db.session(write=False) as db:
        paths = db.scalars(sa.select(VersionFile.path).where(VersionFile.path.startswith("dicom/"))).all()
    assert len(paths) == len(set(paths)) == total
    assert list((config / "ingest").glob("*.json")) == []  # finished: nothing left to resume


def test_sdk_ingests_an_archive_refusing_unsafe_entries_on_dask(as_, runtime, tmp_path) -> None:
    runtime.settings.ingest_workers = 1  # one Dask worker process is enough here
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            zf.writestr(f"ct/IMG{i}.dcm", dicom_bytes(0, i)[0])
        zf.writestr("../../outside.dcm", dicom_bytes(1, 0)[0])
        link = zipfile.ZipInfo("ct/link.dcm")
        link.create_system, link.external_attr = 3, 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    seen = []
    with as_("owner") as client:
        report = client.ingest(
            "alpha", "scans", archive, dask=True, state_dir=tmp_path / "state", progress=seen.append
        )
        assert client.get_ingest("alpha", report.ingest).dask
        rows = client.query("alpha", "select count(*) from scans_metadata").rows
    assert report.counts["stored"] == 3 and report.version == 1 and rows == [[3]]
    reasons = {e.path: e.reasons[0] for e in report.errors}
    assert reasons["../../outside.dcm"].startswith("refused by the client: unsafe name")
    assert "symbolic link" in reasons["ct/link.dcm"]
    assert seen[0].total_files == 3 and seen[-1].files == 3
    assert runtime.ingest is not None and runtime.ingest._dask is not None  # it ran on Dask
