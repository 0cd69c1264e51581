"""The store's parallel decryption (``decrypt_parallel``, ``decrypt_to``) and job staging on top of it.

Real files, real threads, real signals. Each check of the serial reader must hold on the parallel
path too (tampering, truncation, reordering, swapping, a wrong key), and a failure must leave no
plaintext file behind and no worker thread running.
"""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from sanctum.jobs import staging, staging_files
from sanctum.store import BlobNotFound, DiskFull, IntegrityError, LocalBlobStore, new_data_key
from sanctum.store import local as local_module
from sanctum.store.stream import DEFAULT_SEGMENT_SIZE, HEADER_SIZE, STREAM_HEADER_SIZE, TAG_SIZE, Geometry

SEG = 4096
FIRST = SEG - STREAM_HEADER_SIZE  # segment 0 carries the stream header
GEO = Geometry(SEG)
SRC = Path(__file__).resolve().parents[1] / "src"

SIZES = [0, 1, FIRST - 1, FIRST, FIRST + 1, SEG - 1, SEG, SEG + 1, FIRST + SEG, FIRST + SEG + 1, 37 * SEG + 5]


@pytest.fixture
def key() -> bytes:
    return new_data_key()


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", segment_size=SEG)


def data_of(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def serial(store: LocalBlobStore, blob_id: str, key: bytes) -> bytes:
    return b"".join(store.open_range(blob_id, key))


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def into_buffer(store: LocalBlobStore, blob_id: str, key: bytes, threads: int) -> tuple[bytes, list[int]]:
    """decrypt_parallel into one buffer; also returns every offset the sink was given."""
    out = bytearray(store.size(blob_id))
    offsets: list[int] = []
    lock = threading.Lock()

    def sink(offset: int, plain: memoryview) -> None:
        out[offset : offset + len(plain)] = plain
        with lock:
            offsets.append(offset)

    assert store.decrypt_parallel(blob_id, key, sink, threads=threads) == len(out)
    return bytes(out), offsets


def helper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sanctum-decrypt-")]


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("threads", [1, 2, 4, 64])
def test_round_trip_same_bytes_as_the_serial_path(
    store: LocalBlobStore, key: bytes, tmp_path: Path, size: int, threads: int
) -> None:
    data = data_of(size)
    info = store.put_stream([data], key)
    target = tmp_path / "out" / "file.bin"
    target.parent.mkdir()
    assert store.decrypt_to(info.blob_id, key, target, threads=threads) == size
    assert target.read_bytes() == data == serial(store, info.blob_id, key)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    buffered, offsets = into_buffer(store, info.blob_id, key, threads)
    assert buffered == data
    segments = GEO.segment_count(size)
    assert sorted(offsets) == [GEO.pt_start(i) for i in range(segments)]  # each segment exactly once
    assert helper_threads() == []


def test_default_segment_size_and_default_threads(tmp_path: Path, key: bytes) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    data = os.urandom(5 * DEFAULT_SEGMENT_SIZE + 123)
    info = store.put_stream([data], key)
    target = tmp_path / "plain.bin"
    assert store.decrypt_to(info.blob_id, key, target) == len(data)
    assert target.read_bytes() == data
    assert 1 <= local_module.default_decrypt_threads() <= local_module.MAX_DECRYPT_THREADS


def test_several_threads_really_share_the_work(store: LocalBlobStore, key: bytes) -> None:
    info = store.put_stream([data_of(64 * SEG)], key)
    seen: set[int] = set()

    def slow_sink(offset: int, plain: memoryview) -> None:
        seen.add(threading.get_ident())
        time.sleep(0.002)  # releases the GIL: the other worker claims segments meanwhile

    store.decrypt_parallel(info.blob_id, key, slow_sink, threads=2)
    assert len(seen) == 2


# --- every check of the serial path, and no file left ----------------------------------------


@pytest.fixture
def many(store: LocalBlobStore, key: bytes) -> tuple[str, bytes, Path]:
    data = data_of(FIRST + 20 * SEG + 100)  # 22 segments
    info = store.put_stream([data], key)
    return info.blob_id, data, store.path(info.blob_id)


def assert_refused(
    store: LocalBlobStore, blob_id: str, key: bytes, target: Path, match: str, error: type = IntegrityError
) -> None:
    for threads in (1, 2, 4):
        with pytest.raises(error, match=match):
            store.decrypt_to(blob_id, key, target, threads=threads)
        assert not target.exists(), "a failed decryption left a plaintext file"
        with pytest.raises(error, match=match):
            into_buffer(store, blob_id, key, threads)
    assert helper_threads() == []


@pytest.mark.parametrize("segment", [0, 1, 11, 21])
def test_tampered_segment(
    store: LocalBlobStore, key: bytes, many: tuple, tmp_path: Path, segment: int
) -> None:
    blob_id, _, path = many
    flip(path, GEO.ct_start(segment) + 7)
    assert_refused(
        store, blob_id, key, tmp_path / "out.bin", f"segment {segment} of 22 failed authentication"
    )


def test_tampered_tag(store: LocalBlobStore, key: bytes, many: tuple, tmp_path: Path) -> None:
    blob_id, _, path = many
    flip(path, GEO.ct_start(6) - 1)  # last byte of segment 5's tag
    assert_refused(store, blob_id, key, tmp_path / "out.bin", "segment 5 of 22 failed")


@pytest.mark.parametrize(
    ("cut", "match"),
    [
        (lambda size: GEO.ct_start(21), "segment 20 of 21 failed"),  # the last segment dropped
        (lambda size: GEO.ct_start(10), "segment 9 of 10 failed"),  # at a boundary in the middle
        (lambda size: GEO.ct_start(10) + 500, "segment 10 of 11 failed"),  # inside a segment
        (lambda size: size - 1, "segment 21 of 22 failed"),
        (lambda size: HEADER_SIZE + 3, "blob is truncated"),
        (lambda size: 0, "blob is truncated"),
    ],
)
def test_truncated_blob(
    store: LocalBlobStore, key: bytes, many: tuple, tmp_path: Path, cut: object, match: str
) -> None:
    blob_id, _, path = many
    raw = path.read_bytes()
    path.write_bytes(raw[: cut(len(raw))])  # type: ignore[operator]
    assert_refused(store, blob_id, key, tmp_path / "out.bin", match)


def test_appended_bytes(store: LocalBlobStore, key: bytes, many: tuple, tmp_path: Path) -> None:
    blob_id, _, path = many
    path.write_bytes(path.read_bytes() + b"x" * (SEG + TAG_SIZE))
    assert_refused(store, blob_id, key, tmp_path / "out.bin", "failed authentication")


def test_reordered_segments(store: LocalBlobStore, key: bytes, many: tuple, tmp_path: Path) -> None:
    blob_id, _, path = many
    raw = path.read_bytes()
    s5, s6, s7 = GEO.ct_start(5), GEO.ct_start(6), GEO.ct_start(7)
    path.write_bytes(raw[:s5] + raw[s6:s7] + raw[s5:s6] + raw[s7:])
    # Both displaced segments fail; which one a worker meets first depends on the threads.
    assert_refused(store, blob_id, key, tmp_path / "out.bin", "segment [56] of 22 failed")


def test_segment_spliced_from_another_blob(store: LocalBlobStore, key: bytes, tmp_path: Path) -> None:
    a = store.put_stream([data_of(8 * SEG, seed=1)], key)
    b = store.put_stream([data_of(8 * SEG, seed=2)], key)
    ra, rb = store.path(a.blob_id).read_bytes(), store.path(b.blob_id).read_bytes()
    s3, s4 = GEO.ct_start(3), GEO.ct_start(4)
    store.path(b.blob_id).write_bytes(rb[:s3] + ra[s3:s4] + rb[s4:])
    assert_refused(store, b.blob_id, key, tmp_path / "out.bin", "segment 3 of 9 failed")


def test_blob_copied_over_another_id(store: LocalBlobStore, key: bytes, tmp_path: Path) -> None:
    a = store.put_stream([data_of(8 * SEG, seed=1)], key)
    b = store.put_stream([data_of(8 * SEG, seed=2)], key)
    store.path(b.blob_id).write_bytes(store.path(a.blob_id).read_bytes())
    # Every segment fails under b's key; the first to be tried is 0 with one thread, any with more.
    assert_refused(store, b.blob_id, key, tmp_path / "out.bin", f"blob {b.blob_id}: segment \\d+ of 9 failed")


@pytest.mark.parametrize("size", [0, 5000, 30 * SEG])
def test_wrong_key(store: LocalBlobStore, key: bytes, tmp_path: Path, size: int) -> None:
    info = store.put_stream([data_of(size)], key)
    assert_refused(store, info.blob_id, new_data_key(), tmp_path / "out.bin", "or the key is wrong")


def test_missing_blob_and_bad_arguments(
    store: LocalBlobStore, key: bytes, many: tuple, tmp_path: Path
) -> None:
    blob_id, _, _ = many
    target = tmp_path / "out.bin"
    with pytest.raises(BlobNotFound):
        store.decrypt_to("0" * 32, key, target)
    assert not target.exists()
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            store.decrypt_to(blob_id, key, target, threads=bad)  # type: ignore[arg-type]
        assert not target.exists()
    with pytest.raises(ValueError, match="invalid blob id"):
        store.decrypt_to("../etc/passwd", key, target)
    assert not target.exists()
    target.write_bytes(b"someone else's file")  # never overwritten, never removed
    with pytest.raises(FileExistsError):
        store.decrypt_to(blob_id, key, target)
    assert target.read_bytes() == b"someone else's file"


def test_segment_api_bounds(store: LocalBlobStore, key: bytes, many: tuple) -> None:
    from sanctum.store import SegmentReader

    blob_id, data, path = many
    raw = path.read_bytes()
    reader = SegmentReader(lambda offset, length: raw[offset : offset + length], len(raw), key, blob_id)
    for bad in (-1, reader.segment_count):
        with pytest.raises(IndexError):
            reader.segment_span(bad)
    offset, length = reader.segment_span(3)
    with pytest.raises(IntegrityError, match="segment 3 is short"):
        reader.decrypt_segment(3, raw[offset : offset + length - 1])
    plain = reader.decrypt_segment(
        3, raw[offset : offset + length], into=bytearray(reader.max_segment_ciphertext)
    )
    start = reader.plaintext_start(3)
    assert bytes(plain) == data[start : start + SEG]


# --- failures while writing -------------------------------------------------------------------


def test_a_failing_sink_stops_every_worker(store: LocalBlobStore, key: bytes) -> None:
    info = store.put_stream([data_of(200 * SEG)], key)
    calls = 0
    lock = threading.Lock()

    def sink(offset: int, plain: memoryview) -> None:
        nonlocal calls
        with lock:
            calls += 1
            if calls == 5:
                raise OSError(28, "No space left on device")
        time.sleep(0.001)

    with pytest.raises(OSError, match="No space left"):
        store.decrypt_parallel(info.blob_id, key, sink, threads=4)
    assert calls < 5 + 4  # each of the other workers finished at most the segment it held
    assert helper_threads() == []


def test_a_thread_that_cannot_start_stops_the_others(
    store: LocalBlobStore, key: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = store.put_stream([data_of(200 * SEG)], key)
    real_start = threading.Thread.start
    started: list[str] = []

    def start(self: threading.Thread) -> None:
        if self.name.startswith("sanctum-decrypt-") and started:
            raise RuntimeError("can't start new thread")
        started.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    calls = 0

    def sink(offset: int, plain: memoryview) -> None:
        nonlocal calls
        calls += 1
        time.sleep(0.001)

    with pytest.raises(RuntimeError, match="can't start new thread"):
        store.decrypt_parallel(info.blob_id, key, sink, threads=3)
    assert calls < 200  # the helper that did start was stopped, not left to finish the blob
    assert helper_threads() == []
    monkeypatch.undo()
    target = tmp_path / "out.bin"
    monkeypatch.setattr(threading.Thread, "start", start)
    started.clear()
    with pytest.raises(RuntimeError, match="can't start new thread"):
        store.decrypt_to(info.blob_id, key, target, threads=3)
    assert not target.exists()


def test_disk_full_while_writing_leaves_no_file(
    store: LocalBlobStore, key: bytes, many: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob_id, _, _ = many
    real_pwrite = os.pwrite
    writes = 0

    def pwrite(fd: int, data: memoryview, offset: int) -> int:
        nonlocal writes
        writes += 1
        if writes == 3:
            raise OSError(28, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(local_module.os, "pwrite", pwrite)
    target = tmp_path / "out.bin"
    with pytest.raises(OSError, match="No space left"):
        store.decrypt_to(blob_id, key, target, threads=2)
    assert not target.exists()
    assert helper_threads() == []


def test_no_room_for_the_file_fails_before_decrypting(
    store: LocalBlobStore, key: bytes, many: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob_id, _, _ = many
    monkeypatch.setattr(local_module, "_fallocate", lambda: lambda fd, mode, offset, length: 28)
    decrypted: list[int] = []
    monkeypatch.setattr(local_module.LocalBlobStore, "decrypt_parallel", lambda *a, **k: decrypted.append(1))
    target = tmp_path / "out.bin"
    with pytest.raises(DiskFull, match="no space"):
        store.decrypt_to(blob_id, key, target)
    assert not target.exists() and decrypted == []


def test_filesystem_without_fallocate(
    store: LocalBlobStore, key: bytes, many: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob_id, data, _ = many
    monkeypatch.setattr(local_module, "_fallocate", lambda: lambda fd, mode, offset, length: 95)  # EOPNOTSUPP
    target = tmp_path / "out.bin"
    assert store.decrypt_to(blob_id, key, target, threads=3) == len(data)
    assert target.read_bytes() == data


def test_real_fallocate_reserves_the_size(tmp_path: Path) -> None:
    fallocate = local_module._fallocate()
    assert fallocate is not None  # Linux with glibc: the fast path is really taken here
    path = tmp_path / "reserved"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        assert fallocate(fd, 0, 0, 3 * SEG) == 0
    finally:
        os.close(fd)
    st = path.stat()
    assert st.st_size == 3 * SEG and st.st_blocks * 512 >= 3 * SEG


_SIGNAL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    sys.path.insert(0, {src!r})
    from pathlib import Path
    from sanctum.store import LocalBlobStore, new_data_key
    from sanctum.store import local

    class Terminated(Exception):
        pass

    def on_term(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, on_term)
    root = Path({root!r})
    store = LocalBlobStore(root / "blobs", segment_size=4096)
    key = new_data_key()
    info = store.put_stream([os.urandom(4096 * 400)], key)
    real = os.pwrite
    writes = []

    def pwrite(fd, data, offset):
        writes.append(offset)
        if len(writes) == 20:
            os.kill(os.getpid(), signal.SIGTERM)  # as Slurm does to the node agent
        time.sleep(0.0005)
        return real(fd, data, offset)

    local.os.pwrite = pwrite
    target = root / "staged.bin"
    try:
        store.decrypt_to(info.blob_id, key, target, threads=3)
    except Terminated:
        count = len(writes)
        time.sleep(0.2)
        print("terminated", target.exists(), count == len(writes), len(writes) < 400,
              [t.name for t in threading.enumerate() if t.name.startswith("sanctum-decrypt-")])
    else:
        print("finished")
    """
)


def test_sigterm_mid_decryption_leaves_no_file_and_no_writer(tmp_path: Path) -> None:
    script = _SIGNAL_SCRIPT.format(src=str(SRC), root=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # Interrupted, the file removed, no write after the interrupt returned, no worker alive.
    assert done.stdout.split("\n")[0] == "terminated False True True []"


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {src!r})
    from pathlib import Path
    from sanctum.jobs import staging, staging_files
    from sanctum.store import LocalBlobStore, new_data_key
    data_dir = Path({data_dir!r})
    store = LocalBlobStore(data_dir / "blobs", segment_size=4096)
    key = new_data_key()
    info = store.put_stream([os.urandom(4096 * 2000)], key)
    real = os.pwrite
    def pwrite(fd, data, offset):
        n = real(fd, data, offset)
        os.write(1, b"wrote\\n")  # one write: lines of two threads never interleave
        sys.stdin.readline()  # the test kills us here, mid-file
        return n
    os.pwrite = pwrite
    target = staging.job_dir(data_dir, 7) / "data" / "input" / "file.bin"
    staging_files.decrypt_file(store, info.blob_id, key, target, info.size, exact=True)
    """
)


def test_killed_staging_leaves_plaintext_only_until_the_stale_wipe(tmp_path: Path) -> None:
    """SIGKILL cannot be cleaned up after by the process itself: the partial file stays in the job's
    staging folder until the runner's start-up wipe (``staging.wipe_stale``) removes the folder."""
    data_dir = tmp_path / "data"
    (data_dir / "staging").mkdir(parents=True)
    script = _KILL_SCRIPT.format(src=str(SRC), data_dir=str(data_dir))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert line == b"wrote\n", proc.stderr.read()
    job = staging.job_dir(data_dir, 7)
    assert (job / "data" / "input" / "file.bin").exists()  # what a kill leaves behind
    assert staging.wipe_stale(data_dir, keep=set()) == 1
    assert not job.exists()


# --- staging_files.decrypt_file on the parallel path --------------------------------------------


def test_decrypt_file_checks_the_size(store: LocalBlobStore, key: bytes, many: tuple, tmp_path: Path) -> None:
    blob_id, data, _ = many
    exact = tmp_path / "job" / "data" / "a.bin"
    assert staging_files.decrypt_file(store, blob_id, key, exact, len(data), exact=True)
    assert exact.read_bytes() == data
    assert stat.S_IMODE(exact.parent.stat().st_mode) == 0o700
    assert not staging_files.decrypt_file(store, blob_id, key, tmp_path / "b.bin", len(data) + 1, exact=True)
    assert not staging_files.decrypt_file(store, blob_id, key, tmp_path / "c.bin", len(data) - 1, exact=True)
    assert staging_files.decrypt_file(store, blob_id, key, tmp_path / "d.bin", len(data) + 1, exact=False)


def test_decrypt_file_of_a_tampered_blob_leaves_nothing(
    store: LocalBlobStore, key: bytes, many: tuple, tmp_path: Path
) -> None:
    blob_id, data, path = many
    flip(path, GEO.ct_start(17) + 1)
    target = tmp_path / "job" / "data" / "a.bin"
    with pytest.raises(IntegrityError, match="segment 17 of 22"):
        staging_files.decrypt_file(store, blob_id, key, target, len(data), exact=True)
    assert list(target.parent.iterdir()) == []
