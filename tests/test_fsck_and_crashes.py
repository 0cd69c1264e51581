"""Store and catalog stay consistent: fsck finds every disagreement; a killed upload leaves nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.conftest import free_port
from tests.test_datasets import committed
from typer.testing import CliRunner

from sanctum.cli.main import app as cli
from sanctum.db.models import VersionFile

SANCTUM = str(Path(sys.executable).with_name("sanctum"))


@pytest.fixture
def fsck(settings, monkeypatch):
    monkeypatch.setenv("SANCTUM_DATABASE_URL", settings.resolved_database_url)

    def run(*extra: str):
        return CliRunner().invoke(cli, ["fsck", "--data-dir", str(settings.data_dir), "--json", *extra])

    return run


def _blob(runtime) -> str:
    with runtime.db.session(write=False) as db:
        return db.scalar(sa.select(VersionFile.blob_id))


def test_fsck_agrees_then_finds_each_problem(client, world, runtime, fsck) -> None:
    import json

    committed(client, world.h["owner"], {"a.txt": b"hello " * 5000})
    result = fsck("--deep")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["files"] == 1 and report["checked_bytes"] == 30000

    blob = runtime.store.path(_blob(runtime))
    raw = bytearray(blob.read_bytes())
    raw[-20] ^= 0xFF
    blob.write_bytes(bytes(raw))
    assert fsck().exit_code == 0  # sizes still agree: only --deep decrypts
    result = fsck("--deep")
    assert result.exit_code == 1 and json.loads(result.output)["problems"][0]["kind"] == "integrity"

    orphan = runtime.store.put_stream([b"left behind"], os.urandom(32))
    blob.unlink()
    kinds = sorted(p["kind"] for p in json.loads(fsck().output)["problems"])
    assert kinds == ["missing_blob", "orphan_blob"]
    assert orphan.blob_id in fsck().output


def test_orphans_are_cleaned_only_when_old(client, world, runtime) -> None:
    from sanctum.datasets.fsck import cleanup_orphans

    committed(client, world.h["owner"], {"a.txt": b"kept"})
    orphan = runtime.store.put_stream([b"left behind"], os.urandom(32)).blob_id
    with runtime.db.session(write=False) as db:
        assert cleanup_orphans(db, runtime.store) == 0  # young: may be an upload in flight
        old = time.time() - 7200
        os.utime(runtime.store.path(orphan), (old, old))
        assert cleanup_orphans(db, runtime.store) == 1
    assert runtime.store.stats()[0] == 1


def _serve(settings, port: int) -> subprocess.Popen:
    env = {**os.environ, "SANCTUM_DATABASE_URL": settings.resolved_database_url}
    proc = subprocess.Popen(
        [SANCTUM, "serve", "--data-dir", str(settings.data_dir), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.stdout.read() if proc.stdout else ''}")


def test_server_killed_mid_upload_leaves_no_partial_version(settings, people, runtime, world) -> None:
    """SIGKILL while a large upload streams: nothing half-written becomes visible, and the next
    start removes what the dead process left on disk."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1/projects/alpha/datasets"
    h = world.h["owner"]
    proc = _serve(settings, port)
    try:
        with httpx.Client(headers=h, timeout=30) as c:
            c.post(base, json={"name": "scans"}).raise_for_status()
            c.post(f"{base}/scans/versions").raise_for_status()
        sent = threading.Event()

        def body():
            for _ in range(8):
                yield b"x" * (1024 * 1024)
            sent.set()
            time.sleep(30)  # the server dies while waiting for the rest
            yield b"never"

        def upload():
            with contextlib.suppress(Exception):  # the server dies mid-request: any error is expected
                httpx.put(
                    f"{base}/scans/versions/1/files/big.bin",
                    content=body(),
                    headers={**h, "Content-Length": str(64 * 1024 * 1024)},
                    timeout=60,
                )

        thread = threading.Thread(target=upload, daemon=True)
        thread.start()
        assert sent.wait(30)
        time.sleep(0.5)
        parts = list((settings.data_dir / "blobs" / "tmp").glob("*.part"))
        assert parts, "the upload should be in flight, streaming into a .part file"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = _serve(settings, port)  # start-up cleans up
    try:
        assert list((settings.data_dir / "blobs" / "tmp").glob("*.part")) == []
        assert runtime.store.stats()[0] == 0
        with httpx.Client(headers=h, timeout=30) as c:
            assert c.get(f"{base}/scans/versions/1/files").json() == []
            assert c.get(f"{base}/scans/versions").json() == []
            r = c.post(f"{base}/scans/versions/1/commit")
            assert r.status_code == 422 and r.json()["error"]["code"] == "empty_version"
    finally:
        proc.terminate()
        proc.wait(10)


def test_client_disconnect_mid_upload_stores_nothing(live_server, world, runtime) -> None:
    h = world.h["owner"]
    base = f"{live_server.url}/api/v1/projects/alpha/datasets"
    with httpx.Client(headers=h) as c:
        c.post(base, json={"name": "scans"}).raise_for_status()
        c.post(f"{base}/scans/versions").raise_for_status()
    import socket

    host, port = live_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            (
                f"PUT /api/v1/projects/alpha/datasets/scans/versions/1/files/cut.bin HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: {h['Authorization']}\r\nContent-Length: 1000000\r\n\r\n"
            ).encode()
            + b"y" * 300_000
        )
        time.sleep(0.3)
    time.sleep(0.5)
    with httpx.Client(headers=h) as c:
        assert c.get(f"{base}/scans/versions/1/files").json() == []
    assert runtime.store.stats()[0] == 0
    assert list(runtime.store.root.joinpath("tmp").glob("*.part")) == []
