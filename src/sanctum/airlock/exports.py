"""Export requests in a project's context: create, find, change, submit, return, withdraw,
override a failed check, release, and the project's release history.

Who sees a request (filtered in SQL): its requester always; members who review, release or audit
every request that has left draft. Anyone else gets 404, as for another project's object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.access.policy import role_allows
from sanctum.airlock import export_files, reviews, states
from sanctum.airlock.models import ExportFile, ExportRequest, ExportReview, ImportRequest
from sanctum.airlock.rules import export_rules
from sanctum.airlock.states import EDITABLE, UNDER_REVIEW, ExportState
from sanctum.datasets.keyring import Keyring
from sanctum.db.models import Project
from sanctum.errors import Conflict, Denied, InvalidInput, NotFound
from sanctum.projects.service import ProjectContext
from sanctum.store import BlobStore

TITLE_MAX = 200
TEXT_MAX = 10_000
SEES_ALL = (Permission.EXPORTS_REVIEW, Permission.EXPORTS_RELEASE, Permission.AUDIT_READ)


def text(value: str, *, field: str, max_length: int = TEXT_MAX, required: bool = False) -> str:
    """Free text people write (justifications, reasons): line breaks allowed, other controls not."""
    value = value.replace("\r\n", "\n").strip()
    if required and not value:
        raise InvalidInput(f"{field} must not be empty", code="reason_required")
    if len(value) > max_length:
        raise InvalidInput(f"{field} must be at most {max_length} characters")
    if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 or 0x80 <= ord(c) < 0xA0 for c in value):
        raise InvalidInput(f"{field} must not contain control characters")
    return value


def sees_all(ctx: ProjectContext) -> bool:
    return any(role_allows(ctx.role, p, ctx.principal.scopes) for p in SEES_ALL)


def _visible(ctx: ProjectContext) -> Select[tuple[ExportRequest]]:
    mine = ExportRequest.requested_by_id == ctx.principal.user_id
    query = select(ExportRequest).where(ExportRequest.project_id == ctx.project.id)
    if sees_all(ctx):
        return query.where(or_(mine, ExportRequest.state != ExportState.DRAFT))
    return query.where(mine)


def next_number(session: Session, ctx: ProjectContext, model: type[ExportRequest | ImportRequest]) -> int:
    """The next request number in the project; the project row is locked so two requests made at
    once do not both take it (PostgreSQL; SQLite's writers are serialised already)."""
    session.execute(select(Project.id).where(Project.id == ctx.project.id).with_for_update())
    latest = session.scalar(select(func.max(model.number)).where(model.project_id == ctx.project.id))
    return (latest or 0) + 1


def create(session: Session, ctx: ProjectContext, *, title: str, justification: str) -> ExportRequest:
    """A draft; name its files, then submit it. Numbers count up per project."""
    number = next_number(session, ctx, ExportRequest)
    request = ExportRequest(
        project_id=ctx.project.id,
        number=number,
        title=text(title, field="title", max_length=TITLE_MAX),
        justification=text(justification, field="justification"),
        state=ExportState.DRAFT,
        requested_by_id=ctx.principal.user_id,
        required_approvals=export_rules(session, ctx.project).approvals,
    )
    session.add(request)
    session.flush()
    ctx.record(session, "export.create", target=f"export:{number}", details={"title": request.title})
    return request


def load(session: Session, ctx: ProjectContext, number: int, *, for_update: bool = False) -> ExportRequest:
    query = _visible(ctx).where(ExportRequest.number == number)
    if for_update:
        query = query.with_for_update()
    found = session.scalar(query)
    if found is None:
        raise NotFound("export request not found")
    return found


def list_for(
    session: Session, ctx: ProjectContext, *, state: str | None = None, limit: int = 200
) -> list[ExportRequest]:
    query = _visible(ctx)
    if state:
        try:
            query = query.where(ExportRequest.state == ExportState(state).value)
        except ValueError:
            raise InvalidInput("unknown export state", code="invalid_state") from None
    return list(session.scalars(query.order_by(ExportRequest.number.desc()).limit(limit)).all())


def require_editable(ctx: ProjectContext, request: ExportRequest) -> None:
    """Files and text change only in draft or when returned, and only by the requester."""
    if not role_allows(ctx.role, Permission.EXPORTS_REQUEST, ctx.principal.scopes):
        raise Denied(f"your role {ctx.role.value} may not {Permission.EXPORTS_REQUEST.value}")
    if request.requested_by_id != ctx.principal.user_id:
        raise Denied("only the person who made this request may change it", code="not_requester")
    if request.state not in EDITABLE:
        raise Conflict(
            f"the request is {request.state}: files change only in draft or after it was returned",
            code="wrong_state",
        )


def update(
    session: Session,
    ctx: ProjectContext,
    request: ExportRequest,
    *,
    title: str | None,
    justification: str | None,
) -> None:
    require_editable(ctx, request)
    changed = {}
    if title is not None:
        request.title = changed["title"] = text(title, field="title", max_length=TITLE_MAX)
    if justification is not None:
        request.justification = text(justification, field="justification")
        changed["justification"] = "changed"
    ctx.record(session, "export.update", target=f"export:{request.number}", details=changed)


def submit(session: Session, ctx: ProjectContext, request: ExportRequest) -> None:
    states.check(ctx, request, "submit")
    files = export_files.files_of(session, request)
    if not files:
        raise InvalidInput("name at least one file before submitting", code="no_files")
    if not request.justification.strip():
        raise InvalidInput(
            "say why these files must leave (a justification is required)", code="no_justification"
        )
    rules = export_rules(session, ctx.project)
    request.required_approvals = rules.approvals
    request.dmp_version = rules.dmp_version
    states.move(
        session,
        ctx,
        request,
        "submit",
        details={"files": len(files), "checks": {f.name: f.check_verdict for f in files}},
    )
    has_votes = session.scalar(select(ExportReview.id).where(ExportReview.request_id == request.id).limit(1))
    if has_votes is not None:  # returned and resubmitted: unchanged files keep their verdicts
        states.move(session, ctx, request, "resume", "resubmitted with earlier reviews on unchanged files")
        reviews.decide(session, ctx, request)


def return_for_changes(session: Session, ctx: ProjectContext, request: ExportRequest, reason: str) -> None:
    states.move(session, ctx, request, "return", text(reason, field="reason", required=True))


def withdraw(session: Session, ctx: ProjectContext, request: ExportRequest, reason: str = "") -> None:
    states.move(session, ctx, request, "withdraw", text(reason, field="reason"))


def override(
    session: Session, ctx: ProjectContext, request: ExportRequest, name: str, reason: str
) -> ExportFile:
    """A data owner who is not the requester lets a file whose automatic checks failed be released."""
    if not role_allows(ctx.role, Permission.EXPORTS_RELEASE, ctx.principal.scopes):
        raise Denied(f"your role {ctx.role.value} may not {Permission.EXPORTS_RELEASE.value}")
    if request.requested_by_id == ctx.principal.user_id:
        raise Denied("you cannot override the checks of your own request", code="own_request")
    if request.state not in UNDER_REVIEW | {ExportState.APPROVED}:
        raise Conflict(f"not possible while the request is {request.state}", code="wrong_state")
    reason = text(reason, field="reason", required=True)
    file = export_files.file_named(session, request, name)
    if file.check_verdict != "fail":
        raise Conflict(
            f"{name} did not fail its automatic checks: there is nothing to override", code="not_failed"
        )
    file.override_reason, file.override_by_id = reason, ctx.principal.user_id
    file.override_at = datetime.now(UTC)
    failed = [f["message"] for f in file.check_reasons if f.get("verdict") == "fail"]
    ctx.record(
        session,
        "export.override",
        target=f"export:{request.number}",
        details={"name": name, "reason": reason[:1000], "failed_checks": failed},
    )
    return file


def blocked_files(files: list[ExportFile]) -> list[str]:
    return [f.name for f in files if f.check_verdict == "fail" and not f.override_reason]


class FilesChanged(Conflict):
    code = "files_changed"


def release(
    session: Session, ctx: ProjectContext, keyring: Keyring, store: BlobStore, request: ExportRequest
) -> None:
    """Approved → released, after checking no failed check stands and every byte is what was reviewed.

    Bytes that changed since review are recorded (their reviews reset, the request back in review)
    and the release is refused; that record is kept even though the release is not (``persist``).
    """
    states.check(ctx, request, "release")
    files = export_files.files_of(session, request)
    blocked = blocked_files(files)
    if blocked:
        raise Conflict(
            "failed automatic checks block the release of " + ", ".join(blocked) + "; a data owner who did "
            "not make the request may override them with a written reason",
            code="check_failed",
        )
    changed = export_files.changed_files(session, keyring, store, files)
    if changed:
        reset(session, ctx, request, changed)
        names = ", ".join(c.file.name for c in changed)
        raise FilesChanged(
            f"{len(changed)} file(s) changed after they were reviewed ({names}); their reviews were reset "
            "and the request is back in review",
            persist=True,
        )
    states.move(
        session,
        ctx,
        request,
        "release",
        f"released {len(files)} file(s)",
        details={"files": [{"name": f.name, "sha256": f.sha256} for f in files]},
    )


def reset(
    session: Session, ctx: ProjectContext, request: ExportRequest, changed: list[export_files.Changed]
) -> None:
    rules = export_rules(session, ctx.project)
    export_files.reset_changed(session, ctx, request, changed, rules)
    names = ", ".join(c.file.name for c in changed)
    states.move(session, ctx, request, "reset", f"stored bytes changed after review: {names}")


def download_check(session: Session, ctx: ProjectContext, request: ExportRequest) -> None:
    """Only the requester, only after release (the bytes are re-hashed by the caller)."""
    if request.requested_by_id != ctx.principal.user_id:
        raise Denied("only the person who requested this export downloads its files", code="not_requester")
    if request.state != ExportState.RELEASED:
        raise Conflict(
            f"the request is {request.state}: files can be downloaded once released", code="not_released"
        )


@dataclass(frozen=True)
class Released:
    """A file that left the project, for reviewers looking for differencing across releases."""

    export: int
    name: str
    dataset: str
    version: int
    path: str
    sha256: str
    size: int
    columns: list[str] | None
    rows: int | None
    job: int
    job_manifest_sha256: str
    released_at: datetime | None


def history(session: Session, ctx: ProjectContext, *, limit: int = 500) -> list[Released]:
    visible = _visible(ctx).where(ExportRequest.state == ExportState.RELEASED).subquery()
    rows = session.execute(
        select(ExportFile, visible.c.number, visible.c.released_at)
        .join(visible, visible.c.id == ExportFile.request_id)
        .order_by(visible.c.released_at.desc(), ExportFile.name)
        .limit(limit)
    ).all()
    return [
        Released(
            export=number,
            name=f.name,
            dataset=f.dataset_name,
            version=f.version_number,
            path=f.path,
            sha256=f.sha256,
            size=f.size,
            columns=f.columns,
            rows=f.row_count,
            job=f.job_number,
            job_manifest_sha256=f.job_manifest_sha256,
            released_at=released_at,
        )
        for f, number, released_at in rows
    ]


def similar_releases(file: ExportFile, released: list[Released], *, own_export: int) -> list[Released]:
    """Earlier releases a reviewer should compare with: the same columns, or the same output path."""
    columns = {c.lower() for c in file.columns} if file.columns else None
    return [
        r
        for r in released
        if r.export != own_export
        and (
            (columns is not None and r.columns and {c.lower() for c in r.columns} == columns)
            or r.path == file.path
        )
    ]
