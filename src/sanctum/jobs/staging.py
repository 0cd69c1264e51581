"""Staging: the only place a job's inputs exist in plaintext, and only while the job runs.

Why a per-job directory owned by the sandbox user with mode 0700: the decrypted inputs must be
readable by the job and by nobody else on the host; the directory is removed when the job ends,
whatever the outcome (``wipe``), and stale ones from a crash are removed at start-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy.orm import Session

from sanctum.access.permissions import Role
from sanctum.datasets import catalog, querying
from sanctum.datasets.keyring import Keyring
from sanctum.db.models import Dataset, DatasetVersion
from sanctum.jobs import bundle as bundles
from sanctum.jobs import table_views
from sanctum.jobs.models import JobInput
from sanctum.jobs.staging_files import decrypt_file, job_folders, wipe
from sanctum.store import LocalBlobStore


@dataclass(frozen=True)
class Staged:
    root: Path
    code: Path
    inputs: dict[str, Path]
    output: Path
    logs: Path
    bytes_staged: int


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


def _stage_view(
    session: Session, store: LocalBlobStore, key: bytes, dataset_id: int, blob_id: str, role: Role, path: Path
) -> bool:
    """Write the role's view of a policy-governed table; False when the table has no policy."""
    policy = querying.table_policy(session, dataset_id)
    if policy is None:
        return False
    table_views.write_view(store, blob_id, key, path, policy, role.value)
    return True


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
    role: Role | None = None,
) -> Staged:
    """Decrypt the code and every input file; verifies each file's SHA-256 against its manifest.

    A table under a column policy with a view for the signer's ``role`` is staged as that view,
    the same rows and columns the signer's SQL queries return (``querying.role_view``).
    """
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
            if (
                dataset.kind == "table"
                and role is not None
                and _stage_view(session, store, key, dataset.id, entry.blob_id, role, target / relative)
            ):
                total += entry.size
                continue
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


def wipe_stale(data_dir: Path, keep: set[int]) -> int:
    """Remove staging dirs of jobs that are not running here (what a crash left behind)."""
    removed = 0
    for entry in staging_root(data_dir).iterdir():
        name = entry.name
        if name.startswith("job-") and name[4:].isdigit() and int(name[4:]) not in keep:
            wipe(entry)
            removed += 1
    return removed
