"""The airlock in the browser: export requests (the list, a request page for requesters, a review
page for reviewers). Import requests have their own pages (``pages_imports``).

The pages call the airlock services and the API routes' own functions (``export_public``, the
download), so a browser sees what the CLI sees and leaves the same audit trail. Controls are
shown by the same checks that guard the forms (``states.allowed`` and the role table); the forms
refuse anyway. No JavaScript: every action is a form with the session's CSRF token.

The review page shows, per file, the automatic checks, a preview of small tables or text (each
preview audited, as through the API), the lineage of the version (job, manifest hash, inputs), and
earlier releases with the same columns or path, to spot differencing across releases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.airlock import export_files, exports, preview, reviews, states
from sanctum.airlock.export_files import parse_source
from sanctum.airlock.models import ExportRequest
from sanctum.airlock.rules import export_rules
from sanctum.api.deps import DbSession, RuntimeDep
from sanctum.api.routes import exports as exports_api
from sanctum.api.runtime import Runtime
from sanctum.db.models import Dataset, DatasetVersion, VersionFile
from sanctum.errors import SanctumError
from sanctum.jobs import lineage
from sanctum.jobs.models import Job
from sanctum.projects.service import ProjectContext
from sanctum.schemas.airlock import ExportDetail, ExportPreview
from sanctum.web.pages_datasets import _allows, _page, _record_read
from sanctum.web.session import ProjectPage, end_failed, redirect

router = APIRouter(include_in_schema=False)

Reader = Annotated[ProjectContext, Depends(ProjectPage(Permission.AIRLOCK_READ))]
Requester = Annotated[ProjectContext, Depends(ProjectPage(Permission.EXPORTS_REQUEST))]
Reviewer = Annotated[ProjectContext, Depends(ProjectPage(Permission.EXPORTS_REVIEW))]
Releaser = Annotated[ProjectContext, Depends(ProjectPage(Permission.EXPORTS_RELEASE))]
TextField = Annotated[str, Form(max_length=10_000)]
NameField = Annotated[str, Form(max_length=1100)]

NOTICES = {
    "export_created": "Export request created. Name the job outputs that should leave, then submit it.",
    "file_added": "File added and checked. Its verdict is below.",
    "file_removed": "File removed from the request.",
    "submitted": "Submitted: reviewers who did not make the request will look at it.",
    "withdrawn": "Request withdrawn.",
    "reviewed": "Your review is recorded. Other verdicts stay hidden until every verdict is in.",
    "returned": "Returned to the requester for changes.",
    "overridden": "The failed checks of this file are overridden; your reason is in the audit trail.",
    "released": "Released: the requester can now download the files.",
}
OUTPUT_CHOICES = 500


def _base(ctx: ProjectContext) -> str:
    return f"/projects/{ctx.project.name}/exports"


# --------------------------------------------------------------------------- the list


def _output_choices(db: Session, ctx: ProjectContext) -> list[str]:
    """``dataset@version:path`` of job outputs of this project, newest first (the add-file menu)."""
    rows = db.execute(
        select(Dataset.name, DatasetVersion.number, VersionFile.path)
        .join(DatasetVersion, DatasetVersion.dataset_id == Dataset.id)
        .join(Job, Job.output_version_id == DatasetVersion.id)
        .join(VersionFile, VersionFile.version_id == DatasetVersion.id)
        .where(Job.project_id == ctx.project.id, Dataset.shredded_at.is_(None))
        .order_by(DatasetVersion.id.desc(), VersionFile.path)
        .limit(OUTPUT_CHOICES)
    ).all()
    return [f"{name}@{number}:{path}" for name, number, path in rows]


@router.get("/projects/{project}/exports")
def exports_page(request: Request, db: DbSession, ctx: Reader, done: str = "") -> Response:
    return _list(request, db, ctx, notice=NOTICES.get(done))


def _list(
    request: Request, db: Session, ctx: ProjectContext, *, status: int = 200, **context: Any
) -> Response:
    found = exports.list_for(db, ctx)
    return _page(
        request,
        "exports.html",
        ctx,
        status=status,
        exports=[exports_api.export_public(db, ctx, r) for r in found],
        can_request=_allows(ctx, Permission.EXPORTS_REQUEST),
        **{"form": {}, **context},
    )


@router.post("/projects/{project}/exports")
def create_export(
    request: Request, db: DbSession, ctx: Requester, title: TextField = "", justification: TextField = ""
) -> Response:
    try:
        created = exports.create(db, ctx, title=title, justification=justification)
    except SanctumError as exc:
        end_failed(db, exc)
        form = {"title": title, "justification": justification}
        return _list(request, db, ctx, status=exc.status, error=exc.message, form=form)
    db.commit()
    return redirect(f"{_base(ctx)}/{created.number}?done=export_created")


# --------------------------------------------------------------------------- one request


def _request_page(
    request: Request, db: Session, ctx: ProjectContext, number: int, *, status: int = 200, **context: Any
) -> Response:
    found = exports.load(db, ctx, number)
    detail = exports_api.export_public(db, ctx, found, detail=True)
    assert isinstance(detail, ExportDetail)
    mine = found.requested_by_id == ctx.principal.user_id
    editable = mine and found.state in states.EDITABLE and _allows(ctx, Permission.EXPORTS_REQUEST)
    return _page(
        request,
        "export.html",
        ctx,
        status=status,
        export=detail,
        editable=editable,
        choices=_output_choices(db, ctx) if editable else [],
        can_submit=states.allowed(ctx, found, "submit"),
        can_withdraw=states.allowed(ctx, found, "withdraw"),
        can_review=states.allowed(ctx, found, "review"),
        can_release=states.allowed(ctx, found, "release"),
        can_override=_allows(ctx, Permission.EXPORTS_RELEASE)
        and not mine
        and found.state in states.UNDER_REVIEW | {states.ExportState.APPROVED},
        can_download=mine and found.state == states.ExportState.RELEASED,
        **{"form": {}, **context},
    )


@router.get("/projects/{project}/exports/{number}")
def export_page(request: Request, db: DbSession, ctx: Reader, number: int, done: str = "") -> Response:
    return _request_page(request, db, ctx, number, notice=NOTICES.get(done))


def _act(
    request: Request, db: Session, ctx: ProjectContext, number: int, action: Any, done: str, *, page: str = ""
) -> Response:
    """Run ``action(request_row)``; a refusal shows the page again with the reason (404 stays 404)."""
    try:
        action(exports.load(db, ctx, number, for_update=True))
    except SanctumError as exc:
        if exc.status == 404 and exc.message == "export request not found":
            raise
        end_failed(db, exc)
        if page == "review":
            return _review_page(
                request, db, request.app.state.runtime, ctx, number, status=exc.status, error=exc.message
            )
        return _request_page(request, db, ctx, number, status=exc.status, error=exc.message)
    db.commit()
    return redirect(f"{_base(ctx)}/{number}{'/review' if page == 'review' else ''}?done={done}")


@router.post("/projects/{project}/exports/{number}/files")
def add_file(
    request: Request, db: DbSession, runtime: RuntimeDep, ctx: Requester, number: int, source: NameField = ""
) -> Response:
    """Checks run in this request: a page is one unit of work (the API streams it in two)."""

    def add(found: ExportRequest) -> None:
        exports.require_editable(ctx, found)
        dataset, version, path = parse_source(source)
        prepared = export_files.prepare(
            db, ctx, runtime.keyring, runtime.store, export_rules(db, ctx.project),
            dataset=dataset, version=version, path=path,
        )  # fmt: skip
        export_files.attach(db, ctx, found, prepared, None)

    return _act(request, db, ctx, number, add, "file_added")


@router.post("/projects/{project}/exports/{number}/files/remove")
def remove_file(
    request: Request, db: DbSession, ctx: Requester, number: int, name: NameField = ""
) -> Response:
    def remove(found: ExportRequest) -> None:
        exports.require_editable(ctx, found)
        export_files.remove(db, ctx, found, name)

    return _act(request, db, ctx, number, remove, "file_removed")


@router.post("/projects/{project}/exports/{number}/submit")
def submit(request: Request, db: DbSession, ctx: Requester, number: int) -> Response:
    return _act(request, db, ctx, number, lambda found: exports.submit(db, ctx, found), "submitted")


@router.post("/projects/{project}/exports/{number}/withdraw")
def withdraw(
    request: Request, db: DbSession, ctx: Requester, number: int, reason: TextField = ""
) -> Response:
    return _act(request, db, ctx, number, lambda found: exports.withdraw(db, ctx, found, reason), "withdrawn")


@router.post("/projects/{project}/exports/{number}/override")
def override(
    request: Request, db: DbSession, ctx: Releaser, number: int, name: NameField = "", reason: TextField = ""
) -> Response:
    return _act(
        request, db, ctx, number, lambda found: exports.override(db, ctx, found, name, reason), "overridden"
    )


@router.post("/projects/{project}/exports/{number}/release")
def release(request: Request, db: DbSession, runtime: RuntimeDep, ctx: Releaser, number: int) -> Response:
    def act(found: ExportRequest) -> None:
        exports.release(db, ctx, runtime.keyring, runtime.store, found)

    return _act(request, db, ctx, number, act, "released")


@router.get("/projects/{project}/exports/{number}/download/{name:path}")
def download(db: DbSession, runtime: RuntimeDep, ctx: Requester, number: int, name: str) -> Response:
    """The API's download (requester only, released only, re-hashed first, audited)."""
    return exports_api.download_file(number, name, ctx, db, runtime)


# --------------------------------------------------------------------------- the review page


@dataclass(frozen=True)
class FileReview:
    """Everything a reviewer looks at for one file."""

    file: Any
    preview: ExportPreview | None
    lineage: dict[str, Any] | None
    similar: list[exports.Released]


def _lineage(db: Session, ctx: ProjectContext, dataset: str, version: int) -> dict[str, Any] | None:
    try:
        return lineage.lineage_for(db, ctx, dataset, version)
    except SanctumError:  # shredded since, or the dataset was renamed away
        return None


def _review_page(
    request: Request,
    db: Session,
    runtime: Runtime,
    ctx: ProjectContext,
    number: int,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    found = exports.load(db, ctx, number)
    detail = exports_api.export_public(db, ctx, found, detail=True)
    assert isinstance(detail, ExportDetail)
    released = exports.history(db, ctx)
    rows = []
    for file in export_files.files_of(db, found):
        try:
            shown = preview.of(db, ctx, runtime.keyring, runtime.store, found, file)
        except SanctumError:
            shown = None
        if shown is not None and shown.kind != "none":
            _record_read(
                runtime, db, ctx, "export.preview", target=f"export:{number}", details={"name": file.name}
            )
        rows.append(
            FileReview(
                file=next(f for f in detail.files if f.name == file.name),
                preview=shown,
                lineage=_lineage(db, ctx, file.dataset_name, file.version_number),
                similar=exports.similar_releases(file, released, own_export=number),
            )
        )
    return _page(
        request,
        "export_review.html",
        ctx,
        status=status,
        export=detail,
        rows=rows,
        released=released,
        rules=export_rules(db, ctx.project).as_dict(),
        can_review=states.allowed(ctx, found, "review") and bool(detail.your_pending_files),
        can_return=states.allowed(ctx, found, "return"),
        **context,
    )


@router.get("/projects/{project}/exports/{number}/review")
def review_page(
    request: Request, db: DbSession, runtime: RuntimeDep, ctx: Reviewer, number: int, done: str = ""
) -> Response:
    return _review_page(request, db, runtime, ctx, number, notice=NOTICES.get(done))


@router.post("/projects/{project}/exports/{number}/review")
def review(
    request: Request,
    db: DbSession,
    ctx: Reviewer,
    number: int,
    verdict: NameField = "",
    comment: TextField = "",
) -> Response:
    act = lambda found: reviews.vote(db, ctx, found, verdict, comment)  # noqa: E731
    return _act(request, db, ctx, number, act, "reviewed", page="review")


@router.post("/projects/{project}/exports/{number}/return")
def return_request(
    request: Request, db: DbSession, ctx: Reviewer, number: int, reason: TextField = ""
) -> Response:
    act = lambda found: exports.return_for_changes(db, ctx, found, reason)  # noqa: E731
    return _act(request, db, ctx, number, act, "returned", page="review")
