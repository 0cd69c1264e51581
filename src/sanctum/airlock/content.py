"""The plaintext of an export file, read through its dataset version, and proof it is what was reviewed.

Why read through the version (rather than keep a blob id of our own): the bytes that would leave
are the ones the catalog points at now. Hashing them at release and at every download catches a
catalog row pointed at another blob, a changed manifest or a damaged blob alike: whatever the
cause, bytes that are not the reviewed SHA-256 do not leave.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.airlock.models import ExportFile
from sanctum.datasets.keyring import Keyring
from sanctum.db.models import Dataset, VersionFile
from sanctum.errors import NotFound, SanctumError
from sanctum.store import BlobStore, StoreError


@dataclass(frozen=True)
class Source:
    """Where an export file's bytes are now, and the key that opens them."""

    blob_id: str
    key: bytes
    size: int


def source(session: Session, keyring: Keyring, file: ExportFile) -> Source:
    """NotFound when the version's file or the dataset's key is gone (shredded)."""
    dataset = session.get(Dataset, file.dataset_id) if file.dataset_id else None
    where = (VersionFile.version_id == file.version_id, VersionFile.path == file.path)
    entry = session.scalar(select(VersionFile).where(*where)) if file.version_id else None
    if dataset is None or entry is None:
        raise NotFound("this file is no longer in its dataset version (it was shredded)", code="shredded")
    return Source(entry.blob_id, keyring.dataset_key(session, dataset), entry.size)


def read_all(store: BlobStore, src: Source) -> bytes:
    return b"".join(store.open_range(src.blob_id, src.key))


def stream(store: BlobStore, src: Source) -> Iterator[bytes]:
    return store.open_range(src.blob_id, src.key)


def observed_sha256(store: BlobStore, src: Source) -> str | None:
    """SHA-256 of the bytes the store gives back now; None when they fail authentication."""
    digest = hashlib.sha256()
    try:
        for piece in store.open_range(src.blob_id, src.key):
            digest.update(piece)
    except (StoreError, SanctumError):
        return None
    return digest.hexdigest()
