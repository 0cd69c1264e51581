"""Import requests (airlock in): a data scientist asks for one file from outside — a code
dependency, a reference table — to enter the project; a data owner approves or rejects it.

States: draft (no bytes yet) → pending (bytes held) → approved | rejected; withdrawn by the
requester before a decision. The held bytes are encrypted under a key of their own, wrapped by the
project key (``import:<id>``), in the project's blob store but in no dataset: nothing can read them
but the owners' review and the approval. Approved, they become a new version of the named dataset
(re-encrypted under its key) and the request keeps the provenance (requester, approver, original
name, SHA-256, justification); rejected or withdrawn, the held blob and its key are destroyed.

This is the only way data enters a project for data scientists: they still lack ``data:import``.
Images and raw arrays (DICOM, NumPy, NIfTI) are refused: they come in through de-identifying ingest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.access.policy import role_allows
from sanctum.airlock import sniff
from sanctum.airlock.exports import next_number, text
from sanctum.airlock.models import ImportRequest
from sanctum.airlock.rules import import_rules
from sanctum.datasets import catalog, paths, transfer
from sanctum.datasets.catalog import DatasetRef, Kind
from sanctum.datasets.keyring import Keyring
from sanctum.db.models import Dataset, Project, User
from sanctum.db.types import utcnow
from sanctum.errors import Conflict, Denied, InvalidInput, NotFound
from sanctum.jobs.models import Job
from sanctum.projects.service import ProjectContext
from sanctum.store import BlobInfo, BlobStore, StoreError
from sanctum.store import keys as wrapping

SNIFF_BYTES = 64 * 1024


class ImportState(StrEnum):
    DRAFT = "draft"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


I = ImportState  # noqa: E741 - a short alias, as S for exports
SEES_ALL = (Permission.IMPORTS_APPROVE, Permission.AUDIT_READ)


def _visible(ctx: ProjectContext) -> Select[tuple[ImportRequest]]:
    mine = ImportRequest.requested_by_id == ctx.principal.user_id
    query = select(ImportRequest).where(ImportRequest.project_id == ctx.project.id)
    if any(role_allows(ctx.role, p, ctx.principal.scopes) for p in SEES_ALL):
        return query.where(or_(mine, ImportRequest.state != ImportState.DRAFT))
    return query.where(mine)


def _target(session: Session, ctx: ProjectContext, name: str) -> Dataset | None:
    """The dataset the file will land in (None: it will be created); job output datasets refused."""
    existing = session.scalar(
        select(Dataset).where(
            Dataset.project_id == ctx.project.id, Dataset.name == name, Dataset.shredded_at.is_(None)
        )
    )
    if existing is not None and session.scalar(
        select(Job.id).where(Job.output_dataset_id == existing.id).limit(1)
    ):
        raise InvalidInput(
            f"dataset {name} holds job outputs; import into another dataset", code="not_an_import_target"
        )
    return existing


def _record(
    session: Session, ctx: ProjectContext, request: ImportRequest, action: str, **details: object
) -> None:
    ctx.record(session, f"import.{action}", target=f"import:{request.number}", details=details)


def create(
    session: Session,
    ctx: ProjectContext,
    keyring: Keyring,
    *,
    dataset: str,
    filename: str,
    justification: str,
) -> ImportRequest:
    dataset = catalog.dataset_name(dataset)
    filename = paths.file_path(filename)
    justification = text(justification, field="justification", required=True)
    _target(session, ctx, dataset)
    number = next_number(session, ctx, ImportRequest)
    request = ImportRequest(
        project_id=ctx.project.id,
        number=number,
        dataset_name=dataset,
        original_name=filename,
        justification=justification,
        state=ImportState.DRAFT,
        requested_by_id=ctx.principal.user_id,
    )
    session.add(request)
    session.flush()
    request.wrapped_key = wrapping.wrap(
        keyring.project_key(session, ctx.project), wrapping.new_data_key(), f"import:{request.id}"
    )
    _record(session, ctx, request, "create", dataset=dataset, name=filename)
    return request


def load(session: Session, ctx: ProjectContext, number: int, *, for_update: bool = False) -> ImportRequest:
    query = _visible(ctx).where(ImportRequest.number == number)
    if for_update:
        query = query.with_for_update()
    found = session.scalar(query)
    if found is None:
        raise NotFound("import request not found")
    return found


def list_for(session: Session, ctx: ProjectContext, *, limit: int = 200) -> list[ImportRequest]:
    return list(session.scalars(_visible(ctx).order_by(ImportRequest.number.desc()).limit(limit)).all())


def held_key(session: Session, keyring: Keyring, project: Project, request: ImportRequest) -> bytes:
    if request.wrapped_key is None:
        raise NotFound("this request's held file was destroyed", code="shredded")
    return wrapping.unwrap(keyring.project_key(session, project), request.wrapped_key, f"import:{request.id}")


def _as_requester(ctx: ProjectContext, request: ImportRequest, states: frozenset[ImportState]) -> None:
    if not role_allows(ctx.role, Permission.IMPORTS_REQUEST, ctx.principal.scopes):
        raise Denied(f"your role {ctx.role.value} may not {Permission.IMPORTS_REQUEST.value}")
    if request.requested_by_id != ctx.principal.user_id:
        raise Denied("only the person who made this request may do that", code="not_requester")
    if request.state not in states:
        raise Conflict(f"not possible while the request is {request.state}", code="wrong_state")


def upload_key(session: Session, ctx: ProjectContext, keyring: Keyring, request: ImportRequest) -> bytes:
    """Checked before the bytes flow (a short read): the requester, a draft, the held key."""
    _as_requester(ctx, request, frozenset({I.DRAFT}))
    return held_key(session, keyring, ctx.project, request)


class Sniffed:
    """Pass chunks through, keeping the first ones to tell the file's kind by its content."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.head = b""

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if len(self.head) < SNIFF_BYTES:
                self.head += chunk[: SNIFF_BYTES - len(self.head)]
            yield chunk


def refused_kind(name: str, head: bytes, session: Session, project: Project) -> str | None:
    blocked = import_rules(session, project).blocked_types
    kind = sniff.kind_of(name, head)
    for found in (kind.found, kind.claimed):
        if found in blocked:
            return found
    return None


def attach(
    session: Session, ctx: ProjectContext, request: ImportRequest, info: BlobInfo, head: bytes
) -> ImportRequest:
    """The held bytes join the request (the short write after they were stored)."""
    _as_requester(ctx, request, frozenset({I.DRAFT}))
    blocked = refused_kind(request.original_name, head, session, ctx.project)
    if blocked is not None:
        raise InvalidInput(
            f"{blocked} files do not enter through an import request: a data owner ingests them with "
            "de-identification",
            code="blocked_type",
        )
    request.blob_id, request.size, request.sha256 = info.blob_id, info.size, info.sha256
    request.uploaded_at = utcnow()
    request.state = ImportState.PENDING
    _record(
        session,
        ctx,
        request,
        "upload",
        **{"from": "draft", "to": "pending", "size": info.size, "sha256": info.sha256},
    )
    return request


def _as_approver(ctx: ProjectContext, request: ImportRequest) -> None:
    if not role_allows(ctx.role, Permission.IMPORTS_APPROVE, ctx.principal.scopes):
        raise Denied(f"your role {ctx.role.value} may not {Permission.IMPORTS_APPROVE.value}")
    if request.requested_by_id == ctx.principal.user_id:
        raise Denied("you cannot decide on your own import request", code="own_request")
    if request.state != ImportState.PENDING:
        raise Conflict(f"not possible while the request is {request.state}", code="wrong_state")


def read_held(
    session: Session, keyring: Keyring, store: BlobStore, project: Project, request: ImportRequest
) -> bytes:
    """The held bytes, checked against the SHA-256 recorded at upload."""
    try:
        data = b"".join(store.open_range(request.blob_id or "", held_key(session, keyring, project, request)))
    except StoreError:
        raise Conflict(
            "the held file can no longer be read; reject this request", code="integrity_error"
        ) from None
    if hashlib.sha256(data).hexdigest() != request.sha256:
        raise Conflict("the held file is not the one uploaded; reject this request", code="integrity_error")
    return data


@dataclass(frozen=True)
class Landed:
    request: ImportRequest
    discard: list[str]  # blob ids to delete once the transaction has committed
    cleanup: list[str]  # blob ids to delete if it has not


def approve(
    session: Session,
    ctx: ProjectContext,
    keyring: Keyring,
    store: BlobStore,
    request: ImportRequest,
    *,
    reason: str = "",
    max_table_bytes: int,
) -> Landed:
    """The held file becomes the next version of its dataset, in the caller's transaction."""
    _as_approver(ctx, request)
    reason = text(reason, field="reason")
    data = read_held(session, keyring, store, ctx.project, request)
    existing = _target(session, ctx, request.dataset_name)
    ref = (
        DatasetRef(existing, ctx.project)
        if existing is not None
        else catalog.create(
            session, ctx, keyring, name=request.dataset_name, kind="files", description="imported files"
        )
    )
    key = keyring.dataset_key(session, ref.dataset)
    table = None
    if ref.dataset.kind == Kind.TABLE:
        info, schema, rows = transfer.table_blob(
            store, data, request.original_name, key, max_bytes=max_table_bytes
        )
        table, path = (schema, rows), transfer.TABLE_FILE
    else:
        info, path = transfer.store_blob(store, [data], key), request.original_name
    try:
        version = catalog.new_version(session, ctx, ref)
        transfer.attach(session, ctx, ref, version.number, path, info, table=table)
        catalog.commit(session, ctx, ref, version.number, keyring=keyring, store=store)
    except BaseException:
        store.delete(info.blob_id)
        raise
    held = request.blob_id
    requester = session.get(User, request.requested_by_id) if request.requested_by_id else None
    request.state, request.state_reason = ImportState.APPROVED, reason
    request.decided_by_id, request.decided_at = ctx.principal.user_id, utcnow()
    request.dataset_id, request.version_id = ref.dataset.id, version.id
    request.blob_id = request.wrapped_key = None
    _record(
        session,
        ctx,
        request,
        "approve",
        **{
            "from": "pending",
            "to": "approved",
            "reason": reason[:1000],
            "requester": requester.email if requester else None,
            "original_name": request.original_name,
            "sha256": request.sha256,
            "justification": request.justification[:1000],
            "version": f"{ref.dataset.name}@{version.number}",
        },
    )
    return Landed(request, [held] if held else [], [info.blob_id])


def _discard(
    session: Session, ctx: ProjectContext, request: ImportRequest, action: str, reason: str
) -> list[str]:
    source, held = request.state, request.blob_id
    request.state = ImportState.REJECTED if action == "reject" else ImportState.WITHDRAWN
    request.state_reason = reason
    request.decided_by_id, request.decided_at = ctx.principal.user_id, utcnow()
    request.blob_id = request.wrapped_key = None  # the key goes: every copy of the held bytes is noise
    _record(session, ctx, request, action, **{"from": source, "to": request.state, "reason": reason[:1000]})
    return [held] if held else []


def reject(session: Session, ctx: ProjectContext, request: ImportRequest, reason: str) -> list[str]:
    _as_approver(ctx, request)
    return _discard(session, ctx, request, "reject", text(reason, field="reason", required=True))


def withdraw(session: Session, ctx: ProjectContext, request: ImportRequest, reason: str = "") -> list[str]:
    _as_requester(ctx, request, frozenset({I.DRAFT, I.PENDING}))
    return _discard(session, ctx, request, "withdraw", text(reason, field="reason"))
