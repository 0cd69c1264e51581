"""The blob store interface and its local-directory backend.

Layout under ``root``: ``ab/cd/<blob id>`` (two levels of fan-out keep directories small) and
``tmp/<random>.part`` for writes in progress. A write goes to a ``.part`` file, is fsynced, renamed to
its final name and the directory fsynced, so a blob either exists whole or not at all; whatever a
crash leaves in ``tmp`` is removed by ``cleanup_temp()``. A writer holds an ``flock`` on its
``.part`` file, so cleanup never removes a write that is still running (the kernel drops the lock
when the writer dies, even by SIGKILL).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sanctum.store.stream import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    IntegrityError,
    SegmentReader,
    SegmentWriter,
    StoreError,
    plaintext_size,
)

if TYPE_CHECKING:
    from sanctum.store.batch import BlobBatch

_BLOB_ID = re.compile(r"[0-9a-f]{32}")
_FAN = re.compile(r"[0-9a-f]{2}")
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
# Start writing a blob's pages to disk every this many bytes, not all at the final fsync.
WRITE_BEHIND = 8 << 20
# Threads of one parallel decryption (``decrypt_to``): past a few, the page-cache writes and memory
# bandwidth are the limit, and one staging should not take a large server's every core.
MAX_DECRYPT_THREADS = 4
# A sink receives (plaintext offset, plaintext) from a worker thread; the view is reused afterwards.
Sink = Callable[[int, memoryview], object]


class BlobNotFound(StoreError):
    pass


class BlobExists(StoreError):
    """Blobs are immutable: a new version is a new blob, never an overwrite."""


class InvalidBlobId(StoreError, ValueError):
    pass


class DiskFull(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class BlobInfo:
    blob_id: str
    size: int  # plaintext bytes
    sha256: str  # of the plaintext, hex: what a dataset manifest records
    ciphertext_size: int


def new_blob_id() -> str:
    return secrets.token_hex(16)


def check_blob_id(blob_id: str) -> str:
    """Blob ids become file names: only exactly 32 lowercase hex characters are accepted."""
    if not isinstance(blob_id, str) or not _BLOB_ID.fullmatch(blob_id):
        raise InvalidBlobId(f"invalid blob id {blob_id!r}: expected 32 lowercase hex characters")
    return blob_id


class BlobStore(Protocol):
    """What the dataset service needs from a backend; an S3-compatible one implements the same."""

    def put_stream(self, chunks: Iterable[bytes], key: bytes, blob_id: str | None = None) -> BlobInfo: ...

    def open_range(
        self, blob_id: str, key: bytes, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]: ...

    def size(self, blob_id: str) -> int: ...

    def exists(self, blob_id: str) -> bool: ...

    def delete(self, blob_id: str) -> bool: ...

    def iter_blob_ids(self) -> Iterator[str]: ...

    def stats(self) -> tuple[int, int]: ...

    def cleanup_temp(self) -> int: ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Asks the kernel to start writing these pages now (Linux: DONTNEED starts asynchronous writeback
    of dirty pages, then drops clean ones). The disk then works while the next segments are
    encrypted, the closing fsync has little left to do, and a large upload does not push useful
    pages out of the cache. Only a hint: errors are ignored, the fsync still decides durability.
    """
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


@contextlib.contextmanager
def _storage_errors(blob_id: str, root: Path) -> Iterator[None]:
    """OS errors of the store's own I/O as StoreError; errors from the caller's chunks pass untouched."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise DiskFull(f"disk full while writing blob {blob_id} under {root}: {exc.strerror}") from exc
        raise StoreError(f"cannot write blob {blob_id} under {root}: {exc.strerror or exc}") from exc


class LocalBlobStore:
    def __init__(self, root: Path, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        self.root = Path(root)
        self.segment_size = segment_size
        self._tmp = self.root / "tmp"
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._tmp.mkdir(mode=0o700, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        check_blob_id(blob_id)
        return self.root / blob_id[:2] / blob_id[2:4] / blob_id

    def _make_dirs(self, final: Path, changed: set[Path] | None = None) -> None:
        """Creates the fan-out directories, fsyncing each parent whose entries changed; with
        ``changed`` (a batch write), those parents are added to it for the batch's sync instead."""
        for directory in (final.parent.parent, final.parent):
            try:
                directory.mkdir(mode=0o700)
            except FileExistsError:
                continue
            if changed is None:
                _fsync_dir(directory.parent)
            else:
                changed.add(directory.parent)

    def put_stream(self, chunks: Iterable[bytes], key: bytes, blob_id: str | None = None) -> BlobInfo:
        """Encrypts ``chunks`` into a new blob; memory stays at about one segment whatever the size.
        The blob is durable when this returns (file and directory fsynced)."""
        return self._write(chunks, key, new_blob_id() if blob_id is None else check_blob_id(blob_id))

    def batch(self) -> BlobBatch:
        """A batch of blobs written without a per-blob fsync and made durable together by its
        ``sync()``; see ``sanctum.store.batch``."""
        from sanctum.store.batch import BlobBatch

        return BlobBatch(self)

    def _write(
        self, chunks: Iterable[bytes], key: bytes, blob_id: str, changed: set[Path] | None = None
    ) -> BlobInfo:
        """The one write path. ``changed is None``: durable on return (``put_stream``). Otherwise (a
        batch): the same temp file, flock and rename, but no fsync; the final name's directory, and
        any parent whose entries a new fan-out directory changed, are added to ``changed`` for the
        batch's sync, and the temp file is named after the blob (one random draw less)."""
        final = self.path(blob_id)
        if final.exists():
            raise BlobExists(f"blob {blob_id} already exists")
        part = self._tmp / f"{secrets.token_hex(16) if changed is None else blob_id}.part"
        written = flushed = 0
        done = False
        with _storage_errors(blob_id, self.root):
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with _storage_errors(blob_id, self.root):
                fcntl.flock(fd, fcntl.LOCK_EX)

            def sink(data: bytes) -> None:
                nonlocal written, flushed
                view = memoryview(data)
                with _storage_errors(blob_id, self.root):
                    while view:
                        view = view[os.write(fd, view) :]
                written += len(data)
                if written - flushed >= WRITE_BEHIND:
                    _start_writeback(fd, flushed, written - flushed)
                    flushed = written

            writer = SegmentWriter(key, blob_id, sink, segment_size=self.segment_size)
            for chunk in chunks:
                writer.write(chunk)
            size, sha256 = writer.close()
            with _storage_errors(blob_id, self.root):
                if changed is None:
                    os.fsync(fd)
                self._make_dirs(final, changed)
                if final.exists():
                    raise BlobExists(f"blob {blob_id} already exists")
                os.rename(part, final)
                done = True
                if changed is None:
                    _fsync_dir(final.parent)
                else:
                    changed.add(final.parent)
            return BlobInfo(blob_id, size, sha256, written)
        finally:
            if not done:
                with contextlib.suppress(OSError):
                    part.unlink()
            os.close(fd)

    def open_range(self, blob_id: str, key: bytes, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Plaintext bytes [start, end) of a blob, decrypted segment by segment (about two in memory).

        Opening, the header, the layout and the range are checked now; a changed segment raises
        IntegrityError when the iteration reaches it.
        """
        path = self.path(blob_id)
        try:
            file = path.open("rb", buffering=0)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {blob_id} not found") from None
        try:
            fd = file.fileno()
            reader = SegmentReader(_read_at(fd), os.fstat(fd).st_size, key, blob_id)
            pieces = reader.iter_range(start, end)
        except BaseException:
            file.close()
            raise
        return _closing(file, pieces)

    def decrypt_parallel(self, blob_id: str, key: bytes, sink: Sink, *, threads: int | None = None) -> int:
        """Decrypts the whole blob with a few threads and hands every segment's plaintext to ``sink``
        as (plaintext offset, bytes), in no particular order; returns the plaintext size.

        Why: AES-GCM in ``cryptography`` releases the GIL, so segments, each authenticated on its own
        and bound to its position, decrypt side by side. The checks are the serial reader's: the
        header and the layout (size) now, then ``SegmentReader.decrypt_segment`` on every segment, so a
        modified, truncated, reordered or swapped segment or a wrong key raises IntegrityError. After
        an error ``sink`` may have had other segments; the caller discards everything it received.
        ``sink`` runs in the worker threads, once per segment, and must not keep the view.
        """
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        path = self.path(blob_id)
        try:
            file = path.open("rb", buffering=0)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {blob_id} not found") from None
        with file:
            fd = file.fileno()
            reader = SegmentReader(_read_at(fd), os.fstat(fd).st_size, key, blob_id)
            count = reader.segment_count
            workers = max(1, min(threads or default_decrypt_threads(), count))
            claim = iter(range(count))
            lock = threading.Lock()
            stop = threading.Event()
            failed: list[BaseException] = []
            done = [0] * workers

            def work(slot: int) -> None:
                try:
                    read_at = _read_at(fd)  # a buffer per worker: read_at reuses its one
                    plain = bytearray(reader.max_segment_ciphertext)
                    while not stop.is_set():
                        with lock:
                            i = next(claim, None)
                        if i is None:
                            return
                        data = read_at(*reader.segment_span(i))
                        sink(reader.plaintext_start(i), reader.decrypt_segment(i, data, into=plain))
                        done[slot] += 1
                except BaseException as exc:  # recorded for the caller; every worker stops
                    failed.append(exc)
                    stop.set()

            helpers = [
                threading.Thread(target=work, args=(slot,), name=f"sanctum-decrypt-{slot}", daemon=True)
                for slot in range(1, workers)
            ]
            try:
                for helper in helpers:
                    helper.start()
                work(0)  # the calling thread is a worker too: one thread fewer to start
            finally:
                stop.set()  # nothing is left to claim, unless we are leaving early: then stop now
                _join_all(helpers)
            if failed:
                raise failed[0]
            if sum(done) != count:  # cannot happen: every claimed segment is done or has failed
                raise IntegrityError(f"blob {blob_id}: {sum(done)} of {count} segments were decrypted")
            return reader.size

    def decrypt_to(self, blob_id: str, key: bytes, path: Path, *, threads: int | None = None) -> int:
        """Decrypts a whole blob into a new file ``path`` (mode 0600, must not exist); returns its size.

        The parallel path of ``decrypt_parallel``, each segment written with ``os.pwrite`` at its
        plaintext offset (only after it authenticated). On any error (tampering, truncation, a wrong
        key, a full disk, an interrupt) the file is removed before the error propagates: no partial
        plaintext is left behind. Nothing is fsynced: this is working plaintext (job staging), not
        data to keep.
        """
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            size = self.size(blob_id)  # header and layout only: sizes the file before any write
            _preallocate(fd, size)

            def write(offset: int, plain: memoryview) -> None:
                view = plain
                while view:
                    view = view[os.pwrite(fd, view, offset + len(plain) - len(view)) :]

            written = self.decrypt_parallel(blob_id, key, write, threads=threads)
            if written != size:  # the blob changed between the two looks: blobs are immutable
                raise IntegrityError(f"blob {blob_id} changed while it was decrypted")
            return written
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        finally:
            os.close(fd)

    def size(self, blob_id: str) -> int:
        """Plaintext size from the header and the file's length (no key needed, nothing decrypted)."""
        try:
            with self.path(blob_id).open("rb") as file:
                return plaintext_size(file.read(HEADER_SIZE), os.fstat(file.fileno()).st_size)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {blob_id} not found") from None

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).is_file()

    def delete(self, blob_id: str) -> bool:
        path = self.path(blob_id)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def iter_blob_ids(self) -> Iterator[str]:
        for first in _subdirs(self.root):
            for second in _subdirs(first):
                with os.scandir(second) as entries:
                    for entry in entries:
                        if _BLOB_ID.fullmatch(entry.name) and entry.name[:4] == first.name + second.name:
                            yield entry.name

    def stats(self) -> tuple[int, int]:
        """(blob count, ciphertext bytes on disk)."""
        count = total = 0
        for blob_id in self.iter_blob_ids():
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                total += self.path(blob_id).stat().st_size
                count += 1
        return count, total

    def cleanup_temp(self) -> int:
        """Removes ``.part`` files of writes that died; returns how many. Safe while writes run."""
        removed = 0
        for part in self._tmp.glob("*.part"):
            try:
                fd = os.open(part, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                part.unlink()
                removed += 1
            except (BlockingIOError, FileNotFoundError):
                pass  # a live writer holds it, or it has just been renamed or removed
            finally:
                os.close(fd)
        return removed


def _read_at(fd: int) -> Callable[[int, int], memoryview]:
    """``read_at`` for SegmentReader, reading into one reused buffer.

    ``os.pread`` allocates a fresh segment-sized bytes per call; on the test VM those fresh pages
    cost ~1 CPU second per GiB in page faults, six times the decryption. The reader is done with
    each view before it asks for the next, so reusing the buffer is safe.
    """
    buffer = bytearray()

    def read_at(offset: int, length: int) -> memoryview:
        nonlocal buffer
        if len(buffer) < length:
            buffer = bytearray(length)
        view = memoryview(buffer)[:length]
        done = 0
        while done < length and (got := os.preadv(fd, [view[done:]], offset + done)):
            done += got
        return view[:done]

    return read_at


def default_decrypt_threads() -> int:
    """The CPUs this process may run on, capped at ``MAX_DECRYPT_THREADS``."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_DECRYPT_THREADS))


def _join_all(threads: list[threading.Thread]) -> None:
    """Joins every started thread, even when a signal handler raises meanwhile (SIGTERM on a Slurm
    node, Ctrl-C): a worker left running after its caller closed the output file could write
    plaintext into whatever file reuses that descriptor. Workers stop within one segment."""
    pending: BaseException | None = None
    for thread in threads:
        while thread.ident is not None and thread.is_alive():
            try:
                thread.join()
            except BaseException as exc:
                pending = pending or exc
    if pending is not None:
        raise pending


@lru_cache(maxsize=1)
def _fallocate() -> Callable[[int, int, int, int], int] | None:
    """Linux ``fallocate(2)``, or None. Not ``os.posix_fallocate``: where a filesystem lacks
    fallocate, glibc emulates it by writing to every block, which would double the work."""
    import ctypes  # only here: the Slurm node agent's start-up imports this module

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = getattr(libc, "fallocate64", None) or libc.fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    function.restype = ctypes.c_int

    def call(fd: int, mode: int, offset: int, length: int) -> int:
        return 0 if function(fd, mode, offset, length) == 0 else ctypes.get_errno()

    return call


def _preallocate(fd: int, size: int) -> None:
    """Allocates a new file's blocks before the parallel writes fill it.

    Why: on ext4, writes into allocated blocks skip delayed allocation, measured at about half the
    CPU per MiB of writing into a hole; and a full disk fails here, before anything is decrypted.
    A filesystem without fallocate gets a plain ``ftruncate`` (the size, no blocks).
    """
    if size == 0:
        return
    fallocate = _fallocate()
    error = fallocate(fd, 0, 0, size) if fallocate is not None else errno.EOPNOTSUPP
    if error in _DISK_FULL:
        raise DiskFull(f"no space for {size} bytes of plaintext: {os.strerror(error)}")
    if error:
        os.ftruncate(fd, size)


def _subdirs(path: Path) -> Iterator[Path]:
    with os.scandir(path) as entries:
        names = [e.name for e in entries if _FAN.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
    for name in sorted(names):
        yield path / name


def _closing(file: io.FileIO, pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Closes the file when the caller finishes or abandons the iteration (an unstarted generator's
    file is closed by the garbage collector, as FileIO closes itself)."""
    with file:
        yield from pieces
