"""Sharing datasets between projects: offer, accept or decline, revoke."""

from __future__ import annotations

from fastapi import APIRouter

from sanctum.api.deps import DatasetsReader, DbSession, Sharer
from sanctum.datasets import catalog, sharing
from sanctum.db.models import Dataset, Project, Share
from sanctum.schemas.datasets import ShareCreate, SharePublic

router = APIRouter(prefix="/api/v1/projects/{project}", tags=["shares"])


def share_public(share: Share, dataset: Dataset, source: Project, target: Project) -> SharePublic:
    return SharePublic(
        id=share.id,
        dataset=dataset.name,
        source_project=source.name,
        target_project=target.name,
        access=share.access,
        state=share.state,
        created_at=share.created_at,
        decided_at=share.decided_at,
        revoked_at=share.revoked_at,
    )


def _public(db: DbSession, share: Share) -> SharePublic:
    return share_public(
        share,
        db.get(Dataset, share.dataset_id),
        db.get(Project, share.source_project_id),
        db.get(Project, share.target_project_id),
    )  # type: ignore[arg-type]


@router.post("/datasets/{dataset}/shares", status_code=201)
def offer_share(dataset: str, body: ShareCreate, ctx: Sharer, db: DbSession) -> SharePublic:
    """Offer the dataset to another project; its owners accept or decline. Nothing is copied."""
    ref = catalog.resolve(db, ctx, dataset)
    share = sharing.offer(db, ctx, ref, body.project, body.access)
    db.commit()
    return _public(db, share)


@router.get("/shares")
def list_shares(ctx: DatasetsReader, db: DbSession) -> list[SharePublic]:
    """Shares into and out of this project, in every state."""
    return [share_public(*row) for row in sharing.listing(db, ctx)]


@router.post("/shares/{share_id}/accept")
def accept_share(share_id: int, ctx: Sharer, db: DbSession) -> SharePublic:
    share = sharing.decide(db, ctx, share_id, accept=True)
    db.commit()
    return _public(db, share)


@router.post("/shares/{share_id}/decline")
def decline_share(share_id: int, ctx: Sharer, db: DbSession) -> SharePublic:
    share = sharing.decide(db, ctx, share_id, accept=False)
    db.commit()
    return _public(db, share)


@router.delete("/shares/{share_id}", status_code=204)
def revoke_share(share_id: int, ctx: Sharer, db: DbSession) -> None:
    """The source withdraws the share, or the target leaves it: access ends at once."""
    sharing.revoke(db, ctx, share_id)
    db.commit()
