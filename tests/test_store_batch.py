"""Blob batches (``LocalBlobStore.batch()``), on real files: written without a per-blob fsync, made
durable together by ``sync()``, deleted whole when the sync or the caller fails, and a killed
writer leaves nothing but unreferenced blobs that cleanup removes."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from sanctum.store import BlobBatch, DiskFull, LocalBlobStore, StoreError, new_data_key
from sanctum.store import batch as batch_module
from sanctum.store import local as local_module

SEG = 4096
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def key() -> bytes:
    return new_data_key()


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", segment_size=SEG)


def data_of(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def read(store: LocalBlobStore, blob_id: str, key: bytes) -> bytes:
    return b"".join(store.open_range(blob_id, key))


def parts(store: LocalBlobStore) -> list[Path]:
    return list((store.root / "tmp").glob("*.part"))


class SyncLog:
    """Records what is fsynced (by path) and every syncfs (by the directory its fd is open on),
    then does the real call: the sync still happens."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fsynced: list[Path] = []
        self.syncfs: list[Path] = []
        real_fsync, real_syncfs = os.fsync, batch_module._syncfs

        def fsync(fd: int) -> None:
            self.fsynced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
            real_fsync(fd)

        def syncfs(fd: int) -> None:
            self.syncfs.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
            real_syncfs(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(batch_module, "_syncfs", syncfs)


# --- writing and reading -------------------------------------------------------------------------


def test_blobs_of_a_batch_read_back_identical_from_many_threads(store: LocalBlobStore, key: bytes) -> None:
    sizes = [0, 1, SEG - 41, SEG - 40, SEG, 3 * SEG + 7, *range(100, 4000, 97)]
    datas = [data_of(size, seed) for seed, size in enumerate(sizes)]
    with store.batch() as batch, ThreadPoolExecutor(4) as pool:
        infos = list(pool.map(lambda data: batch.put_stream([data], key), datas))
        batch.sync()
    assert sorted(store.iter_blob_ids()) == sorted(i.blob_id for i in infos) == sorted(batch.blob_ids)
    for info, data in zip(infos, datas, strict=True):
        assert read(store, info.blob_id, key) == data
        assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
        # the same format as put_stream: same size on disk for the same plaintext size
        assert info.ciphertext_size == store.put_stream([data], key).ciphertext_size
        assert store.path(info.blob_id).stat().st_mode & 0o777 == 0o600
    assert parts(store) == []


def test_a_batch_shares_its_fan_out_directory_run_by_run(
    store: LocalBlobStore, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_module, "RUN", 3)
    with store.batch() as batch:
        ids = [batch.put_stream([b"x"], key).blob_id for _ in range(7)]
        batch.sync()
    prefixes = [blob_id[:4] for blob_id in ids]
    assert prefixes[0] == prefixes[1] == prefixes[2] and prefixes[3] == prefixes[4] == prefixes[5]
    assert len({prefixes[0], prefixes[3], prefixes[6]}) == 3  # a new directory per run
    assert len(set(ids)) == 7 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert {p.name for p in store.root.iterdir()} == {"tmp", *(p[:2] for p in prefixes)}


# --- durability ----------------------------------------------------------------------------------


def test_writes_do_not_fsync_and_a_small_batch_fsyncs_each_blob_and_directory(
    store: LocalBlobStore, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = SyncLog(monkeypatch)
    with store.batch() as batch:
        ids = [batch.put_stream([data_of(500, i)], key).blob_id for i in range(3)]
        assert log.fsynced == [] and log.syncfs == []  # nothing durable yet
        batch.sync()
    files = {store.path(b) for b in ids}
    leaves = {p.parent for p in files}
    # every blob, its directory, and the parents whose entries the new directories changed
    assert files <= set(log.fsynced)
    assert leaves | {p.parent for p in leaves} | {store.root} <= set(log.fsynced)
    assert log.syncfs == []


def test_directories_another_batch_made_and_has_not_synced_are_synced_too(
    store: LocalBlobStore, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = store.batch()
    made = first.put_stream([b"first"], key).blob_id  # creates ab/ and ab/cd/, not synced
    log = SyncLog(monkeypatch)
    with BlobBatch(store, strategy="fsync") as second:
        second._prefix, second._left = made[:4], 5  # lands in the directory the first batch made
        blob = second.put_stream([b"second"], key).blob_id
        second.sync()
    leaf = store.path(blob).parent
    assert leaf == store.path(made).parent
    assert {store.path(blob), leaf, leaf.parent, store.root} <= set(log.fsynced)
    assert store.path(made) not in log.fsynced  # the other batch's blob is its own business
    first.discard()


def test_a_large_batch_is_one_syncfs_on_the_store(
    store: LocalBlobStore, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not batch_module.syncfs_available():
        pytest.skip("syncfs(2) with error reporting needs Linux 5.8+")
    log = SyncLog(monkeypatch)
    with store.batch() as batch:
        for i in range(batch_module.SYNCFS_MIN_BLOBS):
            batch.put_stream([data_of(300, i)], key)
        batch.sync()
        batch.sync()  # nothing new: nothing to do
    assert log.syncfs == [store.root] and log.fsynced == []


def test_put_stream_outside_a_batch_still_fsyncs_each_blob(
    store: LocalBlobStore, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = SyncLog(monkeypatch)
    info = store.put_stream([b"durable on return"], key)
    path = store.path(info.blob_id)
    assert path.parent in log.fsynced and path.parent.parent in log.fsynced and store.root in log.fsynced
    assert any(p.name.endswith(".part") for p in log.fsynced)  # the file, before its rename


def _fail_fsync_of(path_part: str):
    real = os.fsync

    def fsync(fd: int) -> None:
        if path_part in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    return fsync


@pytest.mark.parametrize("strategy", ["fsync", "syncfs"])
def test_a_failed_sync_deletes_every_blob_of_the_batch(
    store: LocalBlobStore, key: bytes, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    if strategy == "syncfs" and not batch_module.syncfs_available():
        pytest.skip("syncfs(2) with error reporting needs Linux 5.8+")
    kept = store.put_stream([b"another writer's blob"], key)
    batch = BlobBatch(store, strategy=strategy)  # type: ignore[arg-type]
    early = batch.put_stream([b"synced first"], key).blob_id
    batch.sync()
    late = [batch.put_stream([data_of(100, i)], key).blob_id for i in range(3)]
    if strategy == "syncfs":

        def broken(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(batch_module, "_syncfs", broken)
    else:
        monkeypatch.setattr(os, "fsync", _fail_fsync_of(late[1]))
    with pytest.raises(StoreError, match=r"cannot make 3 blobs durable.*Input/output error.*deleted"):
        batch.sync()
    monkeypatch.undo()
    # after a failed sync nothing the batch wrote is trusted, even what an earlier sync covered
    assert list(store.iter_blob_ids()) == [kept.blob_id]
    assert not any(store.exists(b) for b in [early, *late])
    with pytest.raises(StoreError, match="closed"):
        batch.put_stream([b"more"], key)
    with pytest.raises(StoreError, match="closed"):
        batch.sync()


def test_syncfs_is_used_only_where_it_reports_errors(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for release, expected in (("5.4.0-150-generic", False), ("5.8.0", True), ("6.1.0-rc2", True)):
        monkeypatch.setattr(os, "uname", lambda r=release: SimpleNamespace(release=r))
        assert batch_module.syncfs_available() is (expected and batch_module._libc_syncfs() is not None)
    monkeypatch.setattr(os, "uname", lambda: SimpleNamespace(release="4.19.0"))
    with pytest.raises(StoreError, match=r"Linux 5\.8"):
        BlobBatch(store, strategy="syncfs")
    with pytest.raises(ValueError, match="unknown sync strategy"):
        BlobBatch(store, strategy="hope")  # type: ignore[arg-type]
    # on such a kernel a large batch falls back to fsyncing each blob
    log = SyncLog(monkeypatch)
    key = new_data_key()
    with store.batch() as batch:
        ids = [batch.put_stream([b"y"], key).blob_id for _ in range(batch_module.SYNCFS_MIN_BLOBS)]
        batch.sync()
    assert log.syncfs == [] and {store.path(b) for b in ids} <= set(log.fsynced)


# --- leaving a batch -----------------------------------------------------------------------------


def test_an_exception_in_the_block_deletes_the_batch_even_after_its_sync(
    store: LocalBlobStore, key: bytes
) -> None:
    kept = store.put_stream([b"not ours"], key)
    with pytest.raises(RuntimeError, match="the catalog commit failed"), store.batch() as batch:
        for i in range(5):
            batch.put_stream([data_of(50, i)], key)
        batch.sync()
        raise RuntimeError("the catalog commit failed")
    assert list(store.iter_blob_ids()) == [kept.blob_id] and parts(store) == []


def test_leaving_with_unsynced_blobs_is_refused_and_deletes_them(store: LocalBlobStore, key: bytes) -> None:
    with pytest.raises(StoreError, match="1 blobs of the batch were never synced"), store.batch() as batch:
        batch.put_stream([b"a"], key)
        batch.sync()
        batch.put_stream([b"b"], key)
    assert list(store.iter_blob_ids()) == []


def test_a_synced_batch_keeps_its_blobs_and_closes_its_descriptor(store: LocalBlobStore, key: bytes) -> None:
    before = len(os.listdir("/proc/self/fd"))
    with store.batch() as batch:
        assert len(os.listdir("/proc/self/fd")) == before + 1
        info = batch.put_stream([b"kept"], key)
        batch.sync()
    assert len(os.listdir("/proc/self/fd")) == before
    assert read(store, info.blob_id, key) == b"kept"
    with store.batch():
        pass  # an empty batch is fine
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_full_disk_fails_the_write_and_the_block_deletes_the_rest(
    store: LocalBlobStore, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    with pytest.raises(DiskFull, match="disk full while writing blob"), store.batch() as batch:
        batch.put_stream([b"first"], key)
        assert len(list(store.iter_blob_ids())) == 1

        def full(fd: int, data: bytes) -> int:
            if os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        monkeypatch.setattr(local_module.os, "write", full)
        batch.put_stream([b"second"], key)
    monkeypatch.undo()
    assert list(store.iter_blob_ids()) == [] and parts(store) == []


def test_a_discard_racing_a_write_leaves_nothing(store: LocalBlobStore, key: bytes) -> None:
    started, go = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    batch = store.batch()

    def chunks():
        started.set()
        go.wait(10)
        yield b"late"

    def writer() -> None:
        try:
            batch.put_stream(chunks(), key)
        except StoreError as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    assert started.wait(10)
    assert batch.discard() == 0
    go.set()
    thread.join(10)
    assert [str(e) for e in errors] == ["this blob batch was discarded while a blob was being written"]
    assert list(store.iter_blob_ids()) == [] and parts(store) == []


# --- a killed writer -----------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["before the sync", "after the sync"])
def test_a_writer_killed_mid_batch_leaves_only_unreferenced_blobs(
    store: LocalBlobStore, key: bytes, when: str
) -> None:
    """SIGKILL between the writes and the caller's commit: every blob left is whole (the kernel
    keeps what was written), none is half-renamed, and cleanup removes the .part files. Nothing
    references these blobs, so start-up's ``cleanup_orphans`` removes them (tested with the
    catalog in test_ingest_durability)."""
    script = textwrap.dedent(
        f"""
        import random, sys, time
        from pathlib import Path
        from sanctum.store import LocalBlobStore
        store = LocalBlobStore(Path({str(store.root)!r}), segment_size={SEG})
        key = bytes.fromhex({key.hex()!r})
        batch = store.batch()
        for i in range(40):
            data = random.Random(i).randbytes(3000 + i)
            print(batch.put_stream([data], key).blob_id, flush=True)
        if {when == "after the sync"!r}:
            batch.sync()
        print("written", flush=True)
        def endless():
            while True:
                yield bytes(1 << 16)
        batch.put_stream(endless(), key)  # a write in flight when the kill comes
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    try:
        ids = []
        for line in child.stdout:
            if line.strip() == "written":
                break
            ids.append(line.strip())
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 1 << 20 for p in parts(store)):
            assert child.poll() is None and time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert len(ids) == 40 and sorted(store.iter_blob_ids()) == sorted(ids)
    for i, blob_id in enumerate(ids):
        assert read(store, blob_id, key) == random.Random(i).randbytes(3000 + i)
    assert len(parts(store)) == 1 and store.cleanup_temp() == 1 and parts(store) == []
