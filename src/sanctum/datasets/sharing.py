"""Sharing a dataset with another project without copying it.

The source project's owner offers a share (read or write); an owner of the target project accepts
or declines it; either side can end it. The blobs never move: the target reaches them through the
share, decrypted with the source dataset's key, and revoking the share cuts that path at once.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, aliased

from sanctum.audit import record
from sanctum.datasets.catalog import DatasetRef
from sanctum.db.models import Dataset, Project, Share
from sanctum.db.types import utcnow
from sanctum.dmp import enforce
from sanctum.errors import Conflict, InvalidInput, NotFound
from sanctum.projects.service import ProjectContext

ACCESS = ("read", "write")


def _record_both(session: Session, ctx: ProjectContext, share: Share, action: str, **details: object) -> None:
    """Both projects' owners see what happens to a share in their own audit trail."""
    for project_id in {share.source_project_id, share.target_project_id}:
        project = session.get(Project, project_id)
        record(
            session,
            ctx.audit,
            action,
            project_id=project_id,
            project_name=project.name if project else None,
            target=f"share:{share.id}",
            details={"dataset": share.dataset_id, **details},
        )


def offer(session: Session, ctx: ProjectContext, ref: DatasetRef, target: str, access: str) -> Share:
    if ref.share is not None:
        raise InvalidInput("only the project that owns a dataset can share it", code="not_owner")
    if access not in ACCESS:
        raise InvalidInput("access must be 'read' or 'write'", code="invalid_access")
    target_project = session.scalar(select(Project).where(Project.name == target))
    if target_project is None:
        raise NotFound("no project with this name", code="target_not_found")
    if target_project.id == ctx.project.id:
        raise InvalidInput("a dataset is already visible in its own project", code="same_project")
    enforce.refuse_share(session, ctx, ref.dataset, target=target_project.name, action="share.offer")
    active = session.scalar(
        select(Share.id).where(
            Share.dataset_id == ref.dataset.id,
            Share.target_project_id == target_project.id,
            Share.state.in_(["pending", "accepted"]),
        )
    )
    if active is not None:
        raise Conflict("this dataset is already shared with that project", code="already_shared")
    share = Share(
        dataset_id=ref.dataset.id,
        source_project_id=ctx.project.id,
        target_project_id=target_project.id,
        access=access,
        state="pending",
        created_by_id=ctx.principal.user_id,
    )
    session.add(share)
    session.flush()
    _record_both(session, ctx, share, "share.offer", access=access, target_project=target_project.name)
    return share


def listing(session: Session, ctx: ProjectContext) -> list[tuple[Share, Dataset, Project, Project]]:
    """Shares into and out of this project, with the dataset and both projects."""
    source, target = aliased(Project), aliased(Project)
    rows = session.execute(
        select(Share, Dataset, source, target)
        .join(Dataset, Dataset.id == Share.dataset_id)
        .join(source, source.id == Share.source_project_id)
        .join(target, target.id == Share.target_project_id)
        .where(or_(Share.source_project_id == ctx.project.id, Share.target_project_id == ctx.project.id))
        .order_by(Share.id)
    ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def _share(session: Session, ctx: ProjectContext, share_id: int) -> Share:
    share = session.scalar(
        select(Share).where(
            Share.id == share_id,
            or_(Share.source_project_id == ctx.project.id, Share.target_project_id == ctx.project.id),
        )
    )
    if share is None:
        raise NotFound("share not found")
    return share


def decide(session: Session, ctx: ProjectContext, share_id: int, *, accept: bool) -> Share:
    share = _share(session, ctx, share_id)
    if share.target_project_id != ctx.project.id:
        raise NotFound("share not found")  # only the receiving project decides
    if share.state != "pending":
        raise Conflict(f"this share is {share.state}, not pending", code="not_pending")
    if accept:
        dataset = session.get(Dataset, share.dataset_id)
        if dataset is not None:
            enforce.refuse_share(session, ctx, dataset, target=ctx.project.name, action="share.accept")
    share.state = "accepted" if accept else "declined"
    share.decided_at = utcnow()
    share.decided_by_id = ctx.principal.user_id
    _record_both(session, ctx, share, "share.accept" if accept else "share.decline")
    return share


def revoke(session: Session, ctx: ProjectContext, share_id: int) -> Share:
    """The source withdraws, or the target leaves; access ends with this transaction."""
    share = _share(session, ctx, share_id)
    if share.state in ("revoked", "declined"):
        raise Conflict(f"this share is already {share.state}", code="not_active")
    share.state = "revoked"
    share.revoked_at = utcnow()
    _record_both(session, ctx, share, "share.revoke")
    return share


def revoke_all(session: Session, ctx: ProjectContext, dataset_id: int) -> int:
    shares = session.scalars(
        select(Share).where(Share.dataset_id == dataset_id, Share.state.in_(["pending", "accepted"]))
    ).all()
    for share in shares:
        share.state = "revoked"
        share.revoked_at = utcnow()
    return len(shares)
