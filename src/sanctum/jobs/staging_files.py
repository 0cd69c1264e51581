"""Decrypting blobs into a job's staging folder and removing it: shared by the server and Slurm nodes.

Free of database imports, because ``sanctum node run`` starts once per job on a compute node and
every import is start-up time; ``sanctum.jobs.staging`` adds the catalog side for the local runner.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sanctum.store import LocalBlobStore


def job_folders(root: Path) -> tuple[Path, Path, Path, Path]:
    """Make a job's code, data, output and logs folders (0700) under a fresh ``root``."""
    folders = (root / "code", root / "data", root / "output", root / "logs")
    for path in folders:
        path.mkdir(mode=0o700)
    return folders


def decrypt_file(
    store: LocalBlobStore, blob_id: str, key: bytes, path: Path, size: int, *, exact: bool
) -> bool:
    """Decrypt one blob to a new file; False if it held another number of bytes than ``size`` (when
    ``exact``). A blob that fails to decrypt raises and leaves no file behind.

    No second hash: every segment is authenticated (AES-GCM) under a key bound to this blob, so a
    tampered or swapped blob fails to decrypt; a short one fails the size check.

    Why ``decrypt_to``: it decrypts segments on several threads (AES-GCM releases the GIL) and writes
    each at its offset into a preallocated file, so staging is not held to one core's decrypt plus
    write; bench/jobs.py measures it against the store's best decrypt into memory.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = store.decrypt_to(blob_id, key, path)
    return written == size or not exact


def wipe(root: Path) -> None:
    """Remove a staging directory and everything in it (plaintext must not outlive its job)."""
    if root.exists() or root.is_symlink():
        shutil.rmtree(root, ignore_errors=True)
        if root.exists():
            for dirpath, _dirnames, _filenames in os.walk(root):
                os.chmod(dirpath, 0o700)
            shutil.rmtree(root)
