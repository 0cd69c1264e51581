"""Writing many blobs and making them durable together: ``LocalBlobStore.batch()``.

Why: ``put_stream`` makes every blob durable before it returns (an fsync of the file, one of each
directory whose entries changed). For an ingest batch of hundreds of small files those fsyncs were
most of the server's cost per file, and each one forces its own journal commit. But a batch's blobs
only need to be durable before the catalog transaction that references them commits, so the batch
writes them the same way (temp file under ``flock``, rename: a blob is whole under its name or
absent) without any fsync, and ``sync()`` then makes all of them durable at once:

- ``syncfs(2)`` on the store's filesystem when the batch has at least ``SYNCFS_MIN_BLOBS`` blobs to
  sync and the kernel reports writeback errors through it (Linux 5.8 and later). One call, one
  journal commit. The trade-off: it also writes out every other writer's dirty data on that
  filesystem (a job writing its outputs, the catalog database if it lives there), so a sync can
  wait longer on a busy filesystem; it costs this process little CPU either way.
- otherwise an fsync of each blob, then one of each directory on the way to them (the blobs'
  fan-out directories, their parents and the store's root: another batch may have created a
  directory and not synced it yet): the guarantee of ``put_stream``, paid once per directory
  instead of once per blob. A lone DICOM instance does not wait for the whole filesystem.

Either way, if the sync fails (an I/O error, a full disk), every blob of the batch is deleted and
``StoreError`` is raised: after a failed fsync the kernel may have dropped the pages, so nothing
written by the batch is trusted, and a retried sync could report success over lost data.

The blobs of a batch share their fan-out directory (``ab/cd/``), ``RUN`` blobs at a time: the
first four hex characters are drawn once per run, the other 28 per blob (112 random bits; the
ids stay unique, they are not secrets). On an empty or young store a random id usually needs a
new directory, and creating an inode is the dearest part of writing a small blob; a run needs
one. Over many batches the directories fill as evenly as with independent ids.

Use::

    with store.batch() as batch:   # leaving by an exception deletes every blob of the batch
        info = batch.put_stream(chunks, key)   # thread-safe; readable at once, not yet durable
        ...
        batch.sync()               # durable: now the catalog may reference them
        commit_the_catalog_rows()  # if this raises, the batch's blobs are deleted

Leaving the block normally with blobs written after the last ``sync()`` is a programming error:
they are deleted and ``StoreError`` is raised, so nothing un-synced can be referenced by mistake.
A process killed before ``sync()`` (or before the catalog commit) leaves complete or partial blob
files that nothing references; start-up cleanup (``cleanup_orphans``) removes them, and
``cleanup_temp`` the ``.part`` files.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
import threading
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from sanctum.store.local import BlobInfo, _fsync_dir
from sanctum.store.stream import StoreError

if TYPE_CHECKING:
    from sanctum.store.local import LocalBlobStore

# Below this many blobs to sync, fsync each one and its directories: cheap enough, and a small
# batch (one received DICOM instance) does not wait for other writers' data.
SYNCFS_MIN_BLOBS = 16
# Blobs of a batch that share one fan-out directory before the next one is drawn.
RUN = 256
Strategy = Literal["auto", "syncfs", "fsync"]


class BlobBatch:
    """Blobs written without a per-blob fsync, made durable together by ``sync()``. Thread-safe."""

    def __init__(self, store: LocalBlobStore, *, strategy: Strategy = "auto") -> None:
        if strategy not in ("auto", "syncfs", "fsync"):
            raise ValueError(f"unknown sync strategy {strategy!r}")
        if strategy == "syncfs" and not syncfs_available():
            raise StoreError("syncfs(2) with error reporting needs Linux 5.8 or later")
        self.store = store
        self.strategy = strategy
        self._lock = threading.Lock()
        self._blobs: list[str] = []  # every blob of the batch, for discard
        self._unsynced: list[str] = []
        self._changed: set[Path] = set()  # directories on the way to blobs not synced yet
        self._prefix = ""
        self._left = 0
        self._closed = False
        # Opened before any write: syncfs reports the filesystem's writeback errors since this open.
        self._root_fd = os.open(store.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    @property
    def blob_ids(self) -> list[str]:
        with self._lock:
            return list(self._blobs)

    def _next_id(self) -> str:
        with self._lock:
            if self._closed:
                raise StoreError("this blob batch is closed")
            if self._left == 0:
                self._prefix, self._left = secrets.token_hex(2), RUN
            self._left -= 1
            return self._prefix + secrets.token_hex(14)

    def put_stream(self, chunks: Iterable[bytes], key: bytes) -> BlobInfo:
        """Encrypts ``chunks`` into a new blob of the batch: whole under its name when this returns
        (readable, identical to a ``put_stream`` blob), durable only after ``sync()``."""
        blob_id = self._next_id()
        changed: set[Path] = set()
        info = self.store._write(chunks, key, blob_id, changed)
        # Every directory on the way, not only those this write changed: another batch may have
        # created them and not have synced yet, and this blob is lost if their entries are.
        leaf = self.store.path(blob_id).parent
        changed |= {leaf, leaf.parent, self.store.root}
        with self._lock:
            self._blobs.append(blob_id)
            self._unsynced.append(blob_id)
            self._changed |= changed
            closed = self._closed
        if closed:  # discarded meanwhile by another thread: this blob goes too
            self._unlink(blob_id)
            raise StoreError("this blob batch was discarded while a blob was being written")
        return info

    def sync(self) -> None:
        """Makes every blob written so far durable (contents, names, directories). On failure every
        blob of the batch is deleted and ``StoreError`` raised."""
        with self._lock:
            if self._closed:
                raise StoreError("this blob batch is closed")
            blobs, changed = list(self._unsynced), set(self._changed)
        if not blobs:
            return
        try:
            if self._use_syncfs(len(blobs)):
                _syncfs(self._root_fd)
            else:
                for blob_id in blobs:
                    _fsync_file(self.store.path(blob_id))
                for directory in sorted(changed, key=lambda p: len(p.parts), reverse=True):
                    _fsync_dir(directory)
        except OSError as exc:
            self.discard()
            raise StoreError(
                f"cannot make {len(blobs)} blobs durable under {self.store.root}: {exc.strerror or exc};"
                " the batch's blobs were deleted"
            ) from exc
        with self._lock:
            done = set(blobs)
            self._unsynced = [b for b in self._unsynced if b not in done]
            self._changed -= changed

    def _use_syncfs(self, count: int) -> bool:
        if self.strategy == "auto":
            return count >= SYNCFS_MIN_BLOBS and syncfs_available()
        return self.strategy == "syncfs"

    def discard(self) -> int:
        """Deletes every blob of the batch (synced or not) and closes it; returns how many it
        deleted. No directory fsync: a deletion a power cut undoes leaves an unreferenced blob,
        which cleanup removes."""
        with self._lock:
            blobs, self._blobs, self._unsynced = self._blobs, [], []
            self._closed = True
        removed = sum(self._unlink(blob_id) for blob_id in blobs)
        self._close_fd()
        return removed

    def _unlink(self, blob_id: str) -> bool:
        try:
            self.store.path(blob_id).unlink()
        except FileNotFoundError:
            return False
        except OSError:
            return False  # left for cleanup_orphans: nothing references it
        return True

    def close(self) -> None:
        """Ends the batch, keeping its blobs; raises (after deleting them all) if some were never
        synced."""
        with self._lock:
            unsynced = len(self._unsynced)
            if not unsynced:
                self._closed = True
        if unsynced:
            self.discard()
            raise StoreError(f"{unsynced} blobs of the batch were never synced; the batch was deleted")
        self._close_fd()

    def _close_fd(self) -> None:
        with self._lock:
            fd, self._root_fd = self._root_fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> BlobBatch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            self.discard()
        else:
            self.close()

    def __del__(self) -> None:  # a batch dropped without close: do not leak the descriptor
        with contextlib.suppress(Exception):
            self._close_fd()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@lru_cache(maxsize=1)
def _libc_syncfs() -> Callable[[int], int] | None:
    import ctypes  # only here, as for fallocate in local.py

    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


def syncfs_available() -> bool:
    """``syncfs(2)`` exists and reports writeback errors (Linux 5.8+; before, it always returned 0,
    so a lost write would go unnoticed and the per-blob fsync is used instead)."""
    if not sys.platform.startswith("linux") or _libc_syncfs() is None:
        return False
    found = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return found is not None and (int(found[1]), int(found[2])) >= (5, 8)


def _syncfs(fd: int) -> None:
    import ctypes

    function = _libc_syncfs()
    if function is None:
        raise OSError(38, "syncfs is not available")
    if function(fd) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
