"""Moving bytes in and out of dataset versions: streamed uploads, table conversion, downloads.

An upload never holds a database transaction while bytes flow: the draft is checked in a short
read, the body is encrypted straight into the blob store, and only then one short write adds the
file to the draft (with its audit event). A failure at any point leaves at most an unreferenced
blob or a ``.part`` file, which start-up cleanup and ``sanctum fsck`` find; nothing half-written
ever becomes part of a version.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.orm import Session

from sanctum.datasets import catalog
from sanctum.datasets.catalog import DatasetRef, Kind
from sanctum.datasets.keyring import Keyring
from sanctum.db.models import DatasetVersion, VersionFile
from sanctum.errors import Conflict, InvalidInput, SanctumError
from sanctum.projects.service import ProjectContext
from sanctum.store import BlobInfo, BlobStore, DiskFull, StoreError

TABLE_FILE = "table.parquet"


log = logging.getLogger("sanctum.datasets")


class StorageUnavailable(SanctumError):
    status = 507
    code = "insufficient_storage"


class TooLarge(SanctumError):
    status = 413
    code = "payload_too_large"


@dataclass(frozen=True)
class UploadPlan:
    """What a short read established before the bytes flow."""

    version_id: int
    kind: Kind
    key: bytes


def plan(session: Session, keyring: Keyring, ref: DatasetRef, number: int) -> UploadPlan:
    found = catalog.draft(session, ref, number)
    return UploadPlan(found.id, Kind(ref.dataset.kind), keyring.dataset_key(session, ref.dataset))


def counted(chunks: Iterable[bytes], *, limit: int, declared: int | None) -> Iterator[bytes]:
    """Pass chunks through, refusing more than ``limit`` bytes or a body that is not the length
    the client declared (a truncated upload must not become a short file)."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise TooLarge(f"file is larger than the limit of {limit} bytes")
        if declared is not None and seen > declared:
            raise InvalidInput("body is longer than its Content-Length", code="length_mismatch")
        yield chunk
    if declared is not None and seen != declared:
        raise InvalidInput(
            f"body ended after {seen} of {declared} bytes (Content-Length)", code="length_mismatch"
        )


@contextlib.contextmanager
def storage_errors(what: str = "upload", files: str = "the file") -> Iterator[None]:
    """Store paths and OS details go to the log, not to the client: a store failure becomes
    StorageUnavailable (507) saying nothing was stored. Every writer into the store uses this."""
    try:
        yield
    except DiskFull as exc:
        log.error("%s refused: %s", what, exc)
        raise StorageUnavailable("the data store is full; nothing was stored", code="disk_full") from exc
    except StoreError as exc:
        log.error("%s failed: %s", what, exc)
        raise StorageUnavailable(
            f"the data store could not write {files}; nothing was stored", code="store_error"
        ) from exc


def store_blob(store: BlobStore, chunks: Iterable[bytes], key: bytes) -> BlobInfo:
    with storage_errors():
        return store.put_stream(chunks, key)


def table_blob(
    store: BlobStore, body: bytes, filename: str, key: bytes, *, max_bytes: int
) -> tuple[BlobInfo, list[dict[str, object]], int]:
    """CSV or Parquet in, encrypted Parquet out, with the schema and row count for the catalog."""
    from sanctum.datasets import tables  # pyarrow loads on the first table, not at server start
    table = tables.read_table_upload(body, filename, max_bytes=max_bytes)
    parquet = tables.to_parquet_bytes(table)
    info = store_blob(store, [parquet], key)
    return info, tables.schema_json(table), table.num_rows


def attach(
    session: Session,
    ctx: ProjectContext,
    ref: DatasetRef,
    number: int,
    path: str,
    info: BlobInfo,
    *,
    table: tuple[list[dict[str, object]], int] | None = None,
) -> VersionFile:
    """Add an uploaded blob to the draft, in the caller's (write) transaction."""
    found = catalog.draft(session, ref, number)  # still a draft? a commit may have raced us
    if table is not None:
        if catalog.files(session, found):
            raise Conflict("a table version holds one table; create a new version", code="duplicate_path")
        found.table_schema, found.row_count = table
    entry = VersionFile(
        version_id=found.id, path=path, size=info.size, sha256=info.sha256, blob_id=info.blob_id
    )
    session.add(entry)
    try:
        session.flush()
    except DbIntegrityError:
        raise Conflict(f"{path} is already in this version", code="duplicate_path") from None
    found.file_count += 1  # running totals, so a draft shows what it holds before its commit
    found.total_size += info.size
    details: dict[str, object] = {"path": path, "size": info.size, "sha256": info.sha256}
    if table is not None:
        details["rows"] = table[1]
    ctx.record(session, "dataset.import", target=f"{ref.address}@{number}", details=details)
    return entry


def download_plan(
    session: Session, keyring: Keyring, ref: DatasetRef, number: int, path: str
) -> tuple[DatasetVersion, VersionFile, bytes]:
    found = catalog.version(session, ref, number)
    entry = catalog.file(session, found, path)
    return found, entry, keyring.dataset_key(session, ref.dataset)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range as [start, end); None for the whole file.

    Multiple ranges are not supported (the whole file is sent instead, as RFC 9110 allows).
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        raise RangeNotSatisfiable(size)
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                raise RangeNotSatisfiable(size)
            return max(0, size - suffix), size
        start = int(first)
        end = size if last == "" else min(int(last) + 1, size)
    except ValueError:
        raise RangeNotSatisfiable(size) from None
    if start < 0 or start >= size or end <= start:
        raise RangeNotSatisfiable(size)
    return start, end


class RangeNotSatisfiable(SanctumError):
    status = 416
    code = "range_not_satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(f"the requested range is outside the file (size {size})")
        self.size = size
