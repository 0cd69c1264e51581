"""Independent reviews of an export request: votes, the decision, and who sees which verdict.

A review is one verdict per file by one member holding ``exports:review`` who is not the
requester; a reviewer votes once on each file (a file that changes loses its verdicts, so it is
voted on again). The decision waits until every file has the required number of verdicts from
different reviewers — then any rejection rejects the request, otherwise it is approved. Until
then each reviewer sees only their own verdicts, and the audit event of a vote does not name the
verdict either (owners read the trail and may be reviewers); the decision's event lists them all.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sanctum.airlock import states
from sanctum.airlock.export_files import files_of
from sanctum.airlock.models import ExportFile, ExportRequest, ExportReview
from sanctum.airlock.states import ExportState
from sanctum.db.models import User
from sanctum.errors import Conflict, InvalidInput
from sanctum.projects.service import ProjectContext

Verdict = Literal["approve", "reject"]
VERDICTS = ("approve", "reject")


@dataclass(frozen=True)
class Shown:
    """A review as a caller may see it."""

    reviewer: str
    file: str
    verdict: str
    comment: str
    created_at: datetime
    own: bool


def vote(
    session: Session, ctx: ProjectContext, request: ExportRequest, verdict: str, comment: str = ""
) -> int:
    """Record the caller's verdict on every file they have not judged yet; returns how many."""
    states.check(ctx, request, "review")
    if verdict not in VERDICTS:
        raise InvalidInput("verdict must be 'approve' or 'reject'", code="invalid_verdict")
    if verdict == "reject" and not comment.strip():
        raise InvalidInput("say why you reject (a comment is required)", code="reason_required")
    me = ctx.principal.user_id
    judged = set(
        session.scalars(
            select(ExportReview.file_id).where(
                ExportReview.request_id == request.id, ExportReview.reviewer_id == me
            )
        ).all()
    )
    todo = [f for f in files_of(session, request) if f.id not in judged]
    if not todo:
        raise Conflict("you have already reviewed every file of this request", code="already_reviewed")
    session.add_all(
        ExportReview(request_id=request.id, file_id=f.id, reviewer_id=me, verdict=verdict, comment=comment)
        for f in todo
    )
    session.flush()
    details = {"files": [f.name for f in todo], "verdict": "sealed until every verdict is in"}
    states.move(session, ctx, request, "review", details=details)
    decide(session, ctx, request)
    return len(todo)


def _verdicts(session: Session, request: ExportRequest) -> list[tuple[ExportReview, str, str]]:
    rows = session.execute(
        select(ExportReview, ExportFile.name, User.email)
        .join(ExportFile, ExportFile.id == ExportReview.file_id)
        .outerjoin(User, User.id == ExportReview.reviewer_id)
        .where(ExportReview.request_id == request.id)
        .order_by(ExportReview.created_at, ExportReview.id)
    ).all()
    return [(r.ExportReview, r.name, r.email or "(deleted user)") for r in rows]


def decide(session: Session, ctx: ProjectContext, request: ExportRequest) -> None:
    """Approve or reject once every file has its verdicts; otherwise leave the request in review."""
    if request.state != ExportState.IN_REVIEW:
        return
    counts = dict(
        session.execute(
            select(ExportReview.file_id, func.count(func.distinct(ExportReview.reviewer_id)))
            .where(ExportReview.request_id == request.id)
            .group_by(ExportReview.file_id)
        ).all()
    )
    files = files_of(session, request)
    if not files or any(counts.get(f.id, 0) < request.required_approvals for f in files):
        return
    verdicts = _verdicts(session, request)
    listed = sorted({(email, r.verdict) for r, _, email in verdicts})
    rejections = defaultdict(list)
    for review, name, email in verdicts:
        if review.verdict == "reject":
            rejections[(email, review.comment)].append(name)
    revealed = {"verdicts": [{"reviewer": e, "verdict": v} for e, v in listed]}
    if rejections:
        reason = "; ".join(f"{email}: {comment}" for (email, comment) in rejections)
        states.move(session, ctx, request, "reject", reason, details=revealed)
    else:
        reason = f"approved by {len({email for email, _ in listed})} reviewer(s)"
        states.move(session, ctx, request, "approve", reason, details=revealed)


def visible(session: Session, ctx: ProjectContext, request: ExportRequest) -> tuple[list[Shown], bool]:
    """The reviews the caller may see, and whether others' verdicts are still hidden."""
    hidden = request.state not in states.DECIDED
    shown = [
        Shown(email, name, r.verdict, r.comment, r.created_at, r.reviewer_id == ctx.principal.user_id)
        for r, name, email in _verdicts(session, request)
        if not hidden or r.reviewer_id == ctx.principal.user_id
    ]
    return shown, hidden


def reviewers_so_far(session: Session, request: ExportRequest) -> int:
    """How many people have voted (shown to everyone: it says nothing about what they decided)."""
    distinct = func.count(func.distinct(ExportReview.reviewer_id))
    count = session.scalar(select(distinct).where(ExportReview.request_id == request.id))
    return int(count or 0)


def pending_for(session: Session, ctx: ProjectContext, request: ExportRequest) -> list[str]:
    """Files the caller has not judged yet (what their next vote covers)."""
    judged = set(
        session.scalars(
            select(ExportReview.file_id).where(
                ExportReview.request_id == request.id, ExportReview.reviewer_id == ctx.principal.user_id
            )
        ).all()
    )
    return [f.name for f in files_of(session, request) if f.id not in judged]
