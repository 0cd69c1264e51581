"""Turning a finished job's ``/output`` into a new version of its output dataset, and storing logs.

Why files are opened with O_NOFOLLOW and only regular files are taken: the output directory was
writable by untrusted code, which may have left symlinks to host files (``/output/x ->
/etc/shadow``) or FIFOs; reading through them would copy host data into the project. Such
entries are skipped and named in the job's reason.
"""

from __future__ import annotations

import json
import math
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
LIVE_LOG_CAP = 256 * 1024
METRICS_FILE = "metrics.json"
METRICS_CAP = 64 * 1024
METRICS_MOST = 200


@dataclass
class Collected:
    files: list[tuple[str, BlobInfo]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    metrics: dict[str, float] | None = None
    metrics_problem: str | None = None


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
    result.metrics, result.metrics_problem = read_metrics(output)
    return result


def read_metrics(output: Path) -> tuple[dict[str, float] | None, str | None]:
    """The job's summary metrics from ``/output/metrics.json``, or why the file was ignored.

    Why the server reads them at all: a hyperparameter search must learn each trial's score, and a
    sandboxed trial cannot reach the tracking server. Only a small flat object of finite numbers is
    taken, because the file was written by untrusted code; the file itself stays in the output.
    """
    try:
        fd = os.open(output / METRICS_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None, None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, f"{METRICS_FILE} is not a plain file"
        raw = handle.read(METRICS_CAP + 1)
    if len(raw) > METRICS_CAP:
        return None, f"{METRICS_FILE} is larger than {METRICS_CAP // 1024} KiB"
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None, f"{METRICS_FILE} is not valid JSON"
    try:
        return check_metrics(document), None
    except ValueError as exc:
        return None, f"{METRICS_FILE}: {exc}"


def check_metrics(document: object) -> dict[str, float]:
    """A flat object of at most 200 names (1-250 characters) to finite numbers."""
    if not isinstance(document, dict):
        raise ValueError("expected an object of metric name to number")
    if len(document) > METRICS_MOST:
        raise ValueError(f"more than {METRICS_MOST} metrics")
    metrics: dict[str, float] = {}
    for name, value in document.items():
        if not 0 < len(name) <= 250:
            raise ValueError("a metric name must have 1 to 250 characters")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"metric {name[:50]!r} is not a finite number")
        metrics[name] = float(value)
    return metrics


def read_log(path: Path, cap: int = LOG_CAP) -> bytes:
    """The last ``cap`` bytes of a log (the end is where the error is)."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > cap:
                handle.seek(size - cap)
                return b"[... earlier output cut ...]\n" + handle.read(cap)
            return handle.read()
    except FileNotFoundError:
        return b""
