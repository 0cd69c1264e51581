"""Turning a finished job's ``/output`` into a new version of its output dataset, and storing logs.

Why files are opened with O_NOFOLLOW and only regular files are taken: the output directory was
writable by untrusted code, which may have left symlinks to host files (``/output/x ->
/etc/shadow``) or FIFOs; reading through them would copy host data into the project. Such
entries are skipped and named in the job's reason.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sanctum.datasets.paths import file_path
from sanctum.errors import SanctumError
from sanctum.store import BlobInfo, LocalBlobStore

CHUNK = 1024 * 1024
LOG_CAP = 10 * 1024 * 1024


@dataclass
class Collected:
    files: list[tuple[str, BlobInfo]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _read(fd: int) -> Iterator[bytes]:
    try:
        while piece := os.read(fd, CHUNK):
            yield piece
    finally:
        os.close(fd)


def collect(output: Path, store: LocalBlobStore, key: bytes) -> Collected:
    """Encrypt every regular file under ``output`` into the store (not yet recorded anywhere)."""
    result = Collected()
    for dirpath, dirnames, filenames in os.walk(output, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, output).replace(os.sep, "/")
            try:
                path = file_path(rel)
            except SanctumError:
                result.skipped.append(rel[:200])
                continue
            try:
                fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                result.skipped.append(path)
                continue
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                result.skipped.append(path)
                continue
            result.files.append((path, store.put_stream(_read(fd), key)))
    return result


def read_log(path: Path) -> bytes:
    """The last ``LOG_CAP`` bytes of a log (the end is where the error is)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return b""
    with path.open("rb") as handle:
        if size > LOG_CAP:
            handle.seek(size - LOG_CAP)
            return b"[... earlier output cut ...]\n" + handle.read()
        return handle.read()
