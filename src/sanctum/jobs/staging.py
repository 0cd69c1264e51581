"""Staging: the only place a job's inputs exist in plaintext, and only while the job runs.

Why a per-job directory owned by the sandbox user with mode 0700: the decrypted inputs must be
readable by the job and by nobody else on the host; the directory is removed when the job ends,
whatever the outcome (``wipe``), and stale ones from a crash are removed at start-up.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy.orm import Session

from sanctum.datasets import catalog
from sanctum.datasets.keyring import Keyring
from sanctum.db.models import Dataset, DatasetVersion
from sanctum.jobs import bundle as bundles
from sanctum.jobs.models import JobInput
from sanctum.store import LocalBlobStore


@dataclass(frozen=True)
class Staged:
    root: Path
    code: Path
    inputs: dict[str, Path]
    output: Path
    logs: Path
    bytes_staged: int

PIPELINE_DEPTH = 4  # decrypted segments in flight between the two threads


def staging_root(data_dir: Path) -> Path:
    root = data_dir / "staging"
    root.mkdir(mode=0o711, parents=True, exist_ok=True)
    return root


def job_dir(data_dir: Path, job_id: int) -> Path:
    return staging_root(data_dir) / f"job-{job_id}"


def _chown_tree(path: Path, uid: int) -> None:
    if os.geteuid() != 0:
        return
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, uid)
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


def stage(
    session: Session,
    store: LocalBlobStore,
    keyring: Keyring,
    *,
    data_dir: Path,
    job_id: int,
    bundle: bytes,
    inputs: list[JobInput],
    max_bundle_bytes: int,
    sandbox_uid: int,
) -> Staged:
    """Decrypt the code and every input file; verifies each file's SHA-256 against its manifest."""
    root = job_dir(data_dir, job_id)
    wipe(root)
    root.mkdir(mode=0o700)
    code, data, output, logs = job_folders(root)
    bundles.unpack(bundle, code, max_bytes=max_bundle_bytes)
    staged_inputs: dict[str, Path] = {}
    total = 0
    for pinned in inputs:
        mount = pinned.address.replace(".", "__")
        target = data / mount
        target.mkdir(mode=0o700)
        dataset = session.get(Dataset, pinned.dataset_id)
        version = session.get(DatasetVersion, pinned.version_id)
        assert dataset is not None and version is not None
        key = keyring.dataset_key(session, dataset)
        for entry in catalog.files(session, version):
            relative = PurePosixPath(entry.path)
            if dataset.kind == "table":
                relative = PurePosixPath(f"{dataset.name}.parquet")
            if not decrypt_file(
                store, entry.blob_id, key, target / relative, entry.size, exact=dataset.kind != "table"
            ):
                raise OSError(f"input {pinned.address}@{pinned.version_number}:{entry.path} is truncated")
            total += entry.size
        staged_inputs[mount] = target
    _chown_tree(root, sandbox_uid)
    # The job's code and inputs stay root-owned-readable only through the sandbox user; logs are ours.
    if os.geteuid() == 0:
        os.chown(logs, 0, 0)
    return Staged(root, code, staged_inputs, output, logs, total)


def job_folders(root: Path) -> tuple[Path, Path, Path, Path]:
    """Make a job's code, data, output and logs folders (0700) under a fresh ``root``."""
    folders = (root / "code", root / "data", root / "output", root / "logs")
    for path in folders:
        path.mkdir(mode=0o700)
    return folders


def decrypt_file(
    store: LocalBlobStore, blob_id: str, key: bytes, path: Path, size: int, *, exact: bool
) -> bool:
    """Decrypt one blob to a new file; False if it held fewer bytes than ``size`` (when ``exact``).

    No second hash: every segment is authenticated (AES-GCM) under a key bound to this blob, so a
    tampered or swapped blob fails to decrypt; a short one fails the size check.

    Why two threads: decrypting and writing to the page cache each cost about as much, and
    ``os.write`` releases the GIL, so a writer running beside the decryption lets staging run at
    close to the store's decrypt rate instead of half of it (bench/jobs.py measures the ratio).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    pieces: queue.Queue[bytes | None] = queue.Queue(maxsize=PIPELINE_DEPTH)
    failed: list[BaseException] = []
    stop = threading.Event()

    def write_all() -> None:
        try:
            while (piece := pieces.get()) is not None:
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view) :]
        except BaseException as exc:  # reported to the decrypting thread, which raises it
            failed.append(exc)
            stop.set()
            while pieces.get() is not None:  # drain, so the producer never blocks on a full queue
                pass

    writer = threading.Thread(target=write_all, name="sanctum-stage-write", daemon=True)
    writer.start()
    written = 0
    try:
        for piece in store.open_range(blob_id, key):
            if stop.is_set():
                break
            pieces.put(piece)
            written += len(piece)
    finally:
        pieces.put(None)
        writer.join()
        os.close(fd)
    if failed:
        raise failed[0]
    return written == size or not exact


def wipe(root: Path) -> None:
    """Remove a staging directory and everything in it (plaintext must not outlive its job)."""
    if root.exists() or root.is_symlink():
        shutil.rmtree(root, ignore_errors=True)
        if root.exists():
            for dirpath, _dirnames, _filenames in os.walk(root):
                os.chmod(dirpath, 0o700)
            shutil.rmtree(root)


def wipe_stale(data_dir: Path, keep: set[int]) -> int:
    """Remove staging dirs of jobs that are not running here (what a crash left behind)."""
    removed = 0
    for entry in staging_root(data_dir).iterdir():
        name = entry.name
        if name.startswith("job-") and name[4:].isdigit() and int(name[4:]) not in keep:
            wipe(entry)
            removed += 1
    return removed
