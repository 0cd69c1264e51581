"""Datasets, versions, files, shares and queries: the ``Client`` methods behind ``sanctum dataset``.

Bytes are streamed both ways, a chunk at a time, so memory stays flat whatever the file size::

    with Client.from_config() as client:
        client.create_dataset("cardio", "ecg", description="12-lead ECGs")
        version = client.upload_directory("cardio", "ecg", Path("~/ecg").expanduser())
        version = client.upload_archive("cardio", "ecg", Path("batch-2.zip"))   # entry by entry
        [f.path for f in client.list_files("cardio", "ecg", version.number)]
        client.download_file("cardio", "ecg", version.number, "a/b.edf", Path("b.edf"))
        client.query("cardio", "select count(*) from visits").rows

An upload is one new version: a draft is created, every file is sent, then the draft is committed.
If any file fails, the draft stays uncommitted (nothing becomes visible) and the error names the
file. Paths the server would refuse (``..``, absolute, backslashes, NUL, duplicates, overlong) and
unsafe archive entries (zip slip, links, devices) are refused before anything is sent.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import httpx
from pydantic import ValidationError

from sanctum.schemas.datasets import (
    DatasetCreate,
    DatasetPublic,
    FilePublic,
    ProjectSettingsUpdate,
    QueryRequest,
    QueryResponse,
    ShareCreate,
    SharePublic,
    VersionAnonymityPublic,
    VersionPublic,
)
from sanctum.schemas.projects import ProjectPublic
from sanctum.sdk import client as _wire  # circular on purpose: client.py imports this module first
from sanctum.sdk.errors import SanctumAPIError, SanctumConnectionError, SanctumSDKError
from sanctum.sdk.upload_plan import (
    CHUNK,
    TABLE_FILE,
    Progress,
    UploadError,
    UploadItem,
    _check_unique,
    _dataset_url,
    _file_url,
    _segment,
    _version_url,
    archive_items,
    dataset_path,
    directory_items,
)

log = logging.getLogger("sanctum.sdk")


def _source_chunks(stream: BinaryIO, size: int, digest: Any, progress: Progress | None) -> Iterator[bytes]:
    """Exactly ``size`` bytes from ``stream``, hashed as they go; a source that is shorter or longer
    than announced stops the upload (the server would refuse the length mismatch anyway)."""
    sent = 0
    while sent < size:
        chunk = _read(stream, min(CHUNK, size - sent))
        if not chunk:
            raise UploadError(
                f"the source ended after {sent} of {size} bytes (did it change while uploading?)",
                code="source_changed",
            )
        sent += len(chunk)
        digest.update(chunk)
        if progress:
            progress(len(chunk))
        yield chunk
    if _read(stream, 1):
        raise UploadError(
            f"the source is longer than {size} bytes (did it change while uploading?)", code="source_changed"
        )


def _read(stream: BinaryIO, size: int) -> bytes:
    try:
        return stream.read(size)
    except OSError as exc:
        raise UploadError(f"cannot read the source: {exc.strerror or exc}", code="read_error") from exc


def _stream_size(stream: BinaryIO) -> int:
    try:
        here = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(here)
    except (OSError, ValueError, AttributeError):
        raise UploadError("cannot tell the size of this stream: pass size=", code="size_unknown") from None
    return end - here


def _transport(url: str, exc: httpx.TransportError) -> SanctumConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return SanctumConnectionError(f"{url} did not answer in time ({exc})")
    return SanctumConnectionError(f"cannot reach {url}: {str(exc) or type(exc).__name__}")


def _labelled(exc: SanctumSDKError, label: str) -> SanctumSDKError:
    """The same error, its message prefixed so that people know which file it was about."""
    message = f"{label}: {exc.message}"
    if isinstance(exc, SanctumAPIError):
        return SanctumAPIError(exc.status, exc.code, message)
    return type(exc)(message, code=exc.code)


class DatasetsMixin:
    """The dataset half of ``Client`` (``Client`` inherits it; use it through ``Client``)."""

    # Provided by ``Client``.
    url: str
    token: str | None
    _http: httpx.Client

    if TYPE_CHECKING:

        def _call(
            self,
            method: str,
            path: str,
            expect: Any = None,
            *,
            json: Any = None,
            params: dict[str, Any] | None = None,
        ) -> Any: ...

    # ------------------------------------------------------------------ datasets

    def list_datasets(self, project: str) -> list[DatasetPublic]:
        """The project's own datasets, and datasets shared into it as ``<source project>.<name>``."""
        return self._call("GET", f"/projects/{_segment(project)}/datasets", list[DatasetPublic])

    def create_dataset(
        self, project: str, name: str, *, kind: str = "files", description: str = ""
    ) -> DatasetPublic:
        """A new, empty dataset: ``kind`` is ``files`` (any files) or ``table`` (one CSV/Parquet)."""
        body = _wire._body(DatasetCreate, name=name, kind=kind, description=description)
        return self._call("POST", f"/projects/{_segment(project)}/datasets", DatasetPublic, json=body)

    def get_dataset(self, project: str, dataset: str) -> DatasetPublic:
        return self._call("GET", _dataset_url(project, dataset), DatasetPublic)

    def shred_dataset(self, project: str, dataset: str, confirm: str) -> None:
        """Erase the dataset (GDPR Art. 17) by destroying its key: every version, in every copy of
        the store, becomes unreadable. ``confirm`` must be the dataset's name. Data owners only."""
        self._call("DELETE", _dataset_url(project, dataset), params={"confirm": confirm})

    # ------------------------------------------------------------------ versions

    def list_versions(self, project: str, dataset: str, *, drafts: bool = False) -> list[VersionPublic]:
        return self._call(
            "GET",
            f"{_dataset_url(project, dataset)}/versions",
            list[VersionPublic],
            params={"drafts": "true" if drafts else None},
        )

    def get_version(self, project: str, dataset: str, version: int) -> VersionPublic:
        return self._call("GET", _version_url(project, dataset, version), VersionPublic)

    def create_version(self, project: str, dataset: str) -> VersionPublic:
        """A draft to upload files into; nobody sees it until ``commit_version``."""
        return self._call("POST", f"{_dataset_url(project, dataset)}/versions", VersionPublic)

    def commit_version(self, project: str, dataset: str, version: int) -> VersionPublic:
        """Make a draft visible; from then on it never changes."""
        return self._call("POST", f"{_version_url(project, dataset, version)}/commit", VersionPublic)

    def list_files(self, project: str, dataset: str, version: int) -> list[FilePublic]:
        """A version's manifest: path, size and SHA-256 of each file."""
        return self._call("GET", f"{_version_url(project, dataset, version)}/files", list[FilePublic])

    def anonymity_report(self, project: str, dataset: str, version: int) -> VersionAnonymityPublic:
        """The anonymity report stored with a table version at its commit (counts only; any member
        who sees the dataset). 404 ``no_anonymity_report`` when its dataset declares no QIs."""
        url = f"{_version_url(project, dataset, version)}/anonymity"
        return self._call("GET", url, VersionAnonymityPublic)

    # ------------------------------------------------------------------ bytes in

    def upload_file(
        self,
        project: str,
        dataset: str,
        version: int,
        path: str,
        source: Path | BinaryIO | bytes,
        *,
        size: int | None = None,
        progress: Progress | None = None,
    ) -> FilePublic:
        """Stream ``source`` into draft ``version`` as ``path``, a chunk at a time (never read whole).

        ``size`` is needed only for streams that cannot seek. The SHA-256 the server computed is
        compared with the one computed here while sending (table uploads excepted: the server stores
        them converted, as ``table.parquet``).
        """
        path = dataset_path(path)
        with ExitStack() as stack:
            if isinstance(source, bytes | bytearray | memoryview):
                data = memoryview(source)
                size, stream = len(data), cast(BinaryIO, stack.enter_context(_MemoryReader(data)))
            elif isinstance(source, Path | str):
                try:
                    stream = stack.enter_context(Path(source).open("rb"))
                    size = os.fstat(stream.fileno()).st_size if size is None else size
                except OSError as exc:
                    raise UploadError(f"cannot read {source}: {exc.strerror}", code="read_error") from None
            else:
                stream = source
                size = _stream_size(stream) if size is None else size
            digest = hashlib.sha256()
            entry: FilePublic = self._send(
                "PUT",
                _file_url(project, dataset, version, path),
                FilePublic,
                content=_source_chunks(stream, size, digest, progress),
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            )
        if entry.path != TABLE_FILE and entry.sha256 != digest.hexdigest():
            raise SanctumAPIError(
                502,
                "checksum_mismatch",
                f"the server stored {path} with SHA-256 {entry.sha256}, but "
                f"{digest.hexdigest()} was sent; do not commit this version",
            )
        return entry

    def upload_items(
        self,
        project: str,
        dataset: str,
        items: Sequence[UploadItem],
        *,
        progress: Progress | None = None,
        on_file: Callable[[UploadItem], None] | None = None,
    ) -> VersionPublic:
        """One new version holding ``items``: draft, every file, commit. If a file fails, the draft
        is left uncommitted (nothing becomes visible) and the error names the file."""
        if not items:
            raise UploadError("nothing to upload: no regular files", code="empty_upload")
        _check_unique(items)
        draft = self.create_version(project, dataset)
        for item in items:
            if on_file:
                on_file(item)
            label = f"{item.origin} (version {draft.number} left uncommitted)"
            try:
                with item.open() as stream:
                    self.upload_file(
                        project, dataset, draft.number, item.path, stream, size=item.size, progress=progress
                    )
            except SanctumSDKError as exc:
                raise _labelled(exc, label) from exc
            except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                raise UploadError(f"{label}: cannot read it: {reason}", code="read_error") from exc
        return self.commit_version(project, dataset, draft.number)

    def upload_directory(
        self,
        project: str,
        dataset: str,
        directory: Path,
        *,
        prefix: str = "",
        progress: Progress | None = None,
    ) -> VersionPublic:
        """Every regular file under ``directory`` as one new version (paths relative to it, under
        ``prefix``). Symbolic links are skipped, with a warning on the ``sanctum.sdk`` logger."""
        items, skipped = directory_items(Path(directory), prefix=prefix)
        for what in skipped:
            log.warning("skipped %s", what)
        return self.upload_items(project, dataset, items, progress=progress)

    def upload_archive(
        self, project: str, dataset: str, archive: Path, *, prefix: str = "", progress: Progress | None = None
    ) -> VersionPublic:
        """The entries of a .zip or .tar(.gz) archive as one new version, streamed from the archive.
        Unsafe entries (zip slip, links, devices) are refused before anything is sent."""
        with archive_items(Path(archive), prefix=prefix) as items:
            return self.upload_items(project, dataset, items, progress=progress)

    # ------------------------------------------------------------------ bytes out

    def download_file(
        self,
        project: str,
        dataset: str,
        version: int,
        path: str,
        dest: Path | BinaryIO,
        *,
        byte_range: tuple[int, int | None] | None = None,
        progress: Progress | None = None,
        expected: FilePublic | None = None,
    ) -> Path | None:
        """Stream a file (data owners only) to ``dest``: a file path, a directory (the file's name
        is kept), or a writable binary stream. Returns the path written (None for a stream).

        A path is written through a temporary file beside it and renamed at the end, so a target
        name never holds a partial file. A whole file is checked against the SHA-256 of the manifest
        (``expected``, or looked up); a stream has been written to by then, so discard what it got
        when this raises. ``byte_range=(start, stop)`` fetches bytes [start, stop) only (``stop``
        None: to the end), with HTTP Range.
        """
        path = dataset_path(path)
        if byte_range is None and expected is None:
            expected = next((f for f in self.list_files(project, dataset, version) if f.path == path), None)
            if expected is None:
                raise SanctumAPIError(404, "not_found", f"no file {path!r} in version {version}")
        if not isinstance(dest, Path | str):
            self._receive(project, dataset, version, path, dest, byte_range, progress, expected)
            return None
        target = Path(dest)
        if target.is_dir():
            target = target / path.rsplit("/", 1)[-1]
        try:
            fd, part = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:100]}.", suffix=".part")
        except OSError as exc:
            raise SanctumSDKError(
                f"cannot write in {target.parent}: {exc.strerror}", code="write_error"
            ) from None
        try:
            with os.fdopen(fd, "wb") as out:
                self._receive(
                    project, dataset, version, path, cast(BinaryIO, out), byte_range, progress, expected
                )
                out.flush()
                os.fsync(out.fileno())
            os.replace(part, target)
        except OSError as exc:
            with suppress(OSError):
                os.unlink(part)
            raise SanctumSDKError(f"cannot write {target}: {exc.strerror}", code="write_error") from None
        except BaseException:
            with suppress(OSError):
                os.unlink(part)
            raise
        return target

    def _receive(
        self,
        project: str,
        dataset: str,
        version: int,
        path: str,
        out: BinaryIO,
        byte_range: tuple[int, int | None] | None,
        progress: Progress | None,
        expected: FilePublic | None,
    ) -> None:
        headers = self._auth_headers()
        if byte_range is not None:
            start, stop = byte_range
            if start < 0 or (stop is not None and stop <= start):
                raise UploadError(f"invalid byte range {byte_range}", code="invalid_range")
            headers["Range"] = f"bytes={start}-{'' if stop is None else stop - 1}"
        url = self.url + _wire.API + _file_url(project, dataset, version, path)
        digest, received = hashlib.sha256(), 0
        try:
            with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _wire._api_error(response)
                if byte_range is not None and response.status_code != 206:
                    raise SanctumAPIError(
                        response.status_code,
                        "range_ignored",
                        "the server sent the whole file instead of the range asked for",
                    )
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if progress:
                        progress(len(chunk))
        except httpx.TransportError as exc:
            reason = _transport(self.url, exc).message
            raise SanctumConnectionError(
                f"the download of {path} broke off after {received} bytes: {reason}"
            ) from exc
        if (
            byte_range is None
            and expected is not None
            and (received != expected.size or digest.hexdigest() != expected.sha256)
        ):
            raise SanctumAPIError(
                502,
                "checksum_mismatch",
                f"{path}: received {received} bytes with SHA-256 {digest.hexdigest()}, "
                f"the manifest says {expected.size} bytes with {expected.sha256}",
            )

    # ------------------------------------------------------------------ sharing

    def share_dataset(
        self, project: str, dataset: str, target_project: str, *, access: str = "read"
    ) -> SharePublic:
        """Offer the dataset to another project (nothing is copied); its owners accept or decline."""
        body = _wire._body(ShareCreate, project=target_project, access=access)
        return self._call("POST", f"{_dataset_url(project, dataset)}/shares", SharePublic, json=body)

    def list_shares(self, project: str) -> list[SharePublic]:
        """Shares into and out of the project, in every state."""
        return self._call("GET", f"/projects/{_segment(project)}/shares", list[SharePublic])

    def accept_share(self, project: str, share_id: int) -> SharePublic:
        return self._call("POST", f"/projects/{_segment(project)}/shares/{int(share_id)}/accept", SharePublic)

    def decline_share(self, project: str, share_id: int) -> SharePublic:
        return self._call(
            "POST", f"/projects/{_segment(project)}/shares/{int(share_id)}/decline", SharePublic
        )

    def revoke_share(self, project: str, share_id: int) -> None:
        """The source withdraws the share, or the target leaves it: access ends at once."""
        self._call("DELETE", f"/projects/{_segment(project)}/shares/{int(share_id)}")

    # ------------------------------------------------------------------ queries and project data

    def query(self, project: str, sql: str, max_rows: int | None = None) -> QueryResponse:
        """One read-only SQL statement over the project's tables; ``truncated`` says when the rows
        were cut at ``row_limit`` (your role's cap, or ``max_rows``)."""
        body = _wire._body(QueryRequest, sql=sql, max_rows=max_rows)
        return self._call("POST", f"/projects/{_segment(project)}/query", QueryResponse, json=body)

    def delete_project(self, project: str, confirm: str) -> None:
        """Delete the project and crypto-shred all of its data; ``confirm`` must be its name."""
        self._call("DELETE", f"/projects/{_segment(project)}", params={"confirm": confirm})

    def update_project_settings(self, project: str, *, query_row_limit: int) -> ProjectPublic:
        """How many rows a query returns to Data Scientists (data owners)."""
        body = _wire._body(ProjectSettingsUpdate, query_row_limit=query_row_limit)
        return self._call("PATCH", f"/projects/{_segment(project)}/settings", ProjectPublic, json=body)

    # ------------------------------------------------------------------ transport for raw bodies

    def _auth_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _send(
        self, method: str, path: str, expect: Any, *, content: Iterator[bytes], headers: dict[str, str]
    ) -> Any:
        """``_call`` for a streamed request body (``content`` yields it chunk by chunk)."""
        try:
            response = self._http.request(
                method,
                self.url + _wire.API + path,
                content=content,
                headers={**self._auth_headers(), **headers},
            )
        except httpx.TransportError as exc:
            raise _transport(self.url, exc) from exc
        if response.status_code >= 400:
            raise _wire._api_error(response)
        try:
            return _wire._adapter(expect).validate_json(response.content)
        except ValidationError as exc:
            reason = _wire._validation_message(exc)
            raise SanctumAPIError(
                response.status_code, "invalid_response", f"unexpected answer from {self.url}: {reason}"
            ) from None


class _MemoryReader:
    """``bytes`` as a readable stream without copying them whole."""

    def __init__(self, data: memoryview) -> None:
        self._data, self._at = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else min(len(self._data), self._at + n)
        chunk, self._at = bytes(self._data[self._at : end]), end
        return chunk

    def __enter__(self) -> _MemoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._data.release()
