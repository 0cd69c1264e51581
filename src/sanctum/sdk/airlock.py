"""The airlock half of ``Client``: export requests (ask, review, release, download) and imports::

with Client.from_config() as client:
    export = client.create_export("alpha", justification="Table 2 of the paper")
    client.add_export_file("alpha", export.number, "job-outputs", 4, "tables/table2.csv")
    client.submit_export("alpha", export.number)
    # ... two reviewers approve, an owner releases ...
    client.download_export_file("alpha", export.number, "tables/table2.csv", Path("."))

    client.request_import("alpha", "reference", Path("icd10.csv"), justification="ICD-10 codes")
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx

from sanctum.schemas.airlock import (
    ExportCreate,
    ExportDetail,
    ExportFileAdd,
    ExportPreview,
    ExportPublic,
    ExportUpdate,
    ImportCreate,
    ImportPublic,
    OverrideCreate,
    ReasonBody,
    ReleasedFilePublic,
    ReviewCreate,
)
from sanctum.schemas.datasets import ProjectSettingsUpdate
from sanctum.schemas.projects import ProjectPublic
from sanctum.sdk import client as _wire
from sanctum.sdk.errors import SanctumAPIError, SanctumConnectionError, SanctumSDKError
from sanctum.sdk.upload_plan import CHUNK


def _exports(project: str, number: int | None = None) -> str:
    base = f"/projects/{_wire._segment(project)}/exports"
    return base if number is None else f"{base}/{int(number)}"


def _imports(project: str, number: int | None = None) -> str:
    base = f"/projects/{_wire._segment(project)}/imports"
    return base if number is None else f"{base}/{int(number)}"


def _name(name: str) -> str:
    return "/".join(_wire._segment(part) for part in name.split("/"))


class AirlockMixin:
    url: str
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

        def _auth_headers(self) -> dict[str, str]: ...

        def _send(
            self, method: str, path: str, expect: Any, *, content: Any, headers: dict[str, str]
        ) -> Any: ...

    # ------------------------------------------------------------------ exports: requesters

    def create_export(self, project: str, *, title: str = "", justification: str = "") -> ExportDetail:
        body = _wire._body(ExportCreate, title=title, justification=justification)
        return self._call("POST", _exports(project), ExportDetail, json=body)

    def update_export(
        self, project: str, number: int, *, title: str | None = None, justification: str | None = None
    ) -> ExportDetail:
        body = _wire._body(ExportUpdate, title=title, justification=justification)
        return self._call("PATCH", _exports(project, number), ExportDetail, json=body)

    def add_export_file(
        self, project: str, number: int, dataset: str, version: int, path: str, *, name: str | None = None
    ) -> ExportDetail:
        """Name a job output (``dataset@version:path``); the answer carries its automatic checks.
        A file of the same name is replaced, and its reviews are reset."""
        body = _wire._body(ExportFileAdd, dataset=dataset, version=version, path=path, name=name)
        return self._call("POST", f"{_exports(project, number)}/files", ExportDetail, json=body)

    def remove_export_file(self, project: str, number: int, name: str) -> ExportDetail:
        return self._call("DELETE", f"{_exports(project, number)}/files/{_name(name)}", ExportDetail)

    def submit_export(self, project: str, number: int) -> ExportDetail:
        return self._call("POST", f"{_exports(project, number)}/submit", ExportDetail)

    def withdraw_export(self, project: str, number: int, reason: str = "") -> ExportDetail:
        body = _wire._body(ReasonBody, reason=reason)
        return self._call("POST", f"{_exports(project, number)}/withdraw", ExportDetail, json=body)

    def list_exports(self, project: str, *, state: str | None = None) -> list[ExportPublic]:
        return self._call("GET", _exports(project), list[ExportPublic], params={"state": state})

    def get_export(self, project: str, number: int) -> ExportDetail:
        return self._call("GET", _exports(project, number), ExportDetail)

    def download_export_file(self, project: str, number: int, name: str, dest: Path) -> Path:
        """A released file (the requester only) to ``dest`` (a file, or a folder keeping its name),
        written beside it and renamed once its SHA-256 matches the reviewed one."""
        export = self.get_export(project, number)
        expected = next((f for f in export.files if f.name == name), None)
        if expected is None:
            raise SanctumAPIError(404, "not_found", f"no file {name!r} in export {number}")
        target = dest / name.rsplit("/", 1)[-1] if dest.is_dir() else dest
        url = self.url + _wire.API + f"{_exports(project, number)}/files/{_name(name)}"
        fd, part = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:100]}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                digest = self._receive_export(url, out)
                out.flush()
                os.fsync(out.fileno())
            if digest != expected.sha256:
                raise SanctumAPIError(
                    502, "checksum_mismatch", f"{name}: received SHA-256 {digest}, released {expected.sha256}"
                )
            os.replace(part, target)
        finally:
            with suppress(OSError):
                os.unlink(part)
        return target

    def _receive_export(self, url: str, out: BinaryIO) -> str:
        digest = hashlib.sha256()
        try:
            with self._http.stream("GET", url, headers=self._auth_headers()) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _wire._api_error(response)
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
        except httpx.TransportError as exc:
            raise SanctumConnectionError(f"the download from {self.url} broke off: {exc}") from exc
        return digest.hexdigest()

    # ------------------------------------------------------------------ exports: reviewers and owners

    def review_export(self, project: str, number: int, verdict: str, comment: str = "") -> ExportDetail:
        """``verdict`` is ``approve`` or ``reject`` (a rejection needs a comment)."""
        body = _wire._body(ReviewCreate, verdict=verdict, comment=comment)
        return self._call("POST", f"{_exports(project, number)}/reviews", ExportDetail, json=body)

    def return_export(self, project: str, number: int, reason: str) -> ExportDetail:
        body = _wire._body(ReasonBody, reason=reason)
        return self._call("POST", f"{_exports(project, number)}/return", ExportDetail, json=body)

    def preview_export_file(self, project: str, number: int, name: str) -> ExportPreview:
        return self._call("GET", f"{_exports(project, number)}/preview/{_name(name)}", ExportPreview)

    def export_history(self, project: str) -> list[ReleasedFilePublic]:
        return self._call("GET", f"{_exports(project)}/history", list[ReleasedFilePublic])

    def override_export_check(self, project: str, number: int, name: str, reason: str) -> ExportDetail:
        body = _wire._body(OverrideCreate, name=name, reason=reason)
        return self._call("POST", f"{_exports(project, number)}/override", ExportDetail, json=body)

    def release_export(self, project: str, number: int) -> ExportDetail:
        return self._call("POST", f"{_exports(project, number)}/release", ExportDetail)

    def set_export_approvals(self, project: str, approvals: int) -> ProjectPublic:
        """How many independent approvals an export request needs (data owners; 1 or 2)."""
        body = _wire._body(ProjectSettingsUpdate, export_approvals=approvals)
        return self._call("PATCH", f"/projects/{_wire._segment(project)}/settings", ProjectPublic, json=body)

    # ------------------------------------------------------------------ imports

    def request_import(
        self, project: str, dataset: str, source: Path, *, justification: str, filename: str | None = None
    ) -> ImportPublic:
        """Ask for ``source`` to enter ``dataset`` and upload it to the holding area."""
        name = filename or source.name
        body = _wire._body(ImportCreate, dataset=dataset, filename=name, justification=justification)
        created: ImportPublic = self._call("POST", _imports(project), ImportPublic, json=body)
        try:
            size = source.stat().st_size
            with source.open("rb") as stream:
                return self._send(
                    "PUT",
                    f"{_imports(project, created.number)}/file",
                    ImportPublic,
                    content=iter(lambda: stream.read(CHUNK), b""),
                    headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
                )
        except OSError as exc:
            raise SanctumSDKError(f"cannot read {source}: {exc.strerror}", code="read_error") from None

    def list_imports(self, project: str) -> list[ImportPublic]:
        return self._call("GET", _imports(project), list[ImportPublic])

    def get_import(self, project: str, number: int) -> ImportPublic:
        return self._call("GET", _imports(project, number), ImportPublic)

    def approve_import(self, project: str, number: int, reason: str = "") -> ImportPublic:
        body = _wire._body(ReasonBody, reason=reason)
        return self._call("POST", f"{_imports(project, number)}/approve", ImportPublic, json=body)

    def reject_import(self, project: str, number: int, reason: str) -> ImportPublic:
        body = _wire._body(ReasonBody, reason=reason)
        return self._call("POST", f"{_imports(project, number)}/reject", ImportPublic, json=body)

    def withdraw_import(self, project: str, number: int, reason: str = "") -> ImportPublic:
        body = _wire._body(ReasonBody, reason=reason)
        return self._call("POST", f"{_imports(project, number)}/withdraw", ImportPublic, json=body)
