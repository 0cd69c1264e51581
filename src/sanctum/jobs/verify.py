"""The checks a signed job must pass, shared by the server at submit and every executor at start.

Why checked twice: between submit and start a job may wait in a queue, and in that time its
signer can lose their role, revoke their key, or the manifest can expire; on Slurm the code sits
on a shared file system where it could be altered. The executor trusts nothing it did not verify.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.access.permissions import ROLE_PERMISSIONS, Permission, Role
from sanctum.db.models import Dataset, DatasetVersion, Membership
from sanctum.errors import Denied
from sanctum.jobs import manifest as manifests
from sanctum.jobs.models import Job, JobInput, SigningKey
from sanctum.security import signing


class Refused(Exception):
    """A job that must not run, with the reason its submitter will read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_signer(
    session: Session, project_id: int, fingerprint: str, *, submitter_id: int | None
) -> SigningKey:
    key = session.scalar(select(SigningKey).where(SigningKey.fingerprint == fingerprint))
    if key is None or key.revoked_at is not None:
        raise Denied(
            "the manifest is signed with a key that is not registered (or was revoked)",
            code="unknown_key",
            persist=True,
        )
    if submitter_id is not None and key.user_id != submitter_id:
        raise Denied("the manifest is signed with another user's key", code="not_signer", persist=True)
    role = session.scalar(
        select(Membership.role).where(Membership.project_id == project_id, Membership.user_id == key.user_id)
    )
    if role is None or Permission.JOBS_SUBMIT not in ROLE_PERMISSIONS[Role(role)]:
        raise Denied(
            "the signer may not run jobs in this project (data owners and data scientists may)",
            code="signer_role",
            persist=True,
        )
    return key


def signature_holds(key: SigningKey, canonical: bytes, signature: bytes) -> bool:
    return signing.verify(key.public_key, canonical, signature)


def for_run(session: Session, job: Job, bundle: bytes | None) -> manifests.Manifest:
    """Re-verify a queued job just before it runs; raises Refused with the reason."""
    try:
        key = check_signer(session, job.project_id, job.signer_fingerprint, submitter_id=None)
    except Denied as exc:
        raise Refused(exc.message) from None
    canonical = job.manifest.encode()
    if signing.canonical(json.loads(canonical)) != canonical:
        raise Refused("the stored manifest is not in canonical form")
    if not signing.verify(key.public_key, canonical, signing.decode_signature(job.signature)):
        raise Refused("the manifest's signature does not verify")
    manifest = manifests.parse(json.loads(canonical))
    if manifest.expires_at <= datetime.now(UTC):
        raise Refused("the manifest expired before the job could start; sign and submit it again")
    if bundle is not None and (
        len(bundle) != manifest.bundle_size or hashlib.sha256(bundle).hexdigest() != manifest.bundle_sha256
    ):
        raise Refused("the code bundle differs from the one that was signed")
    for pinned in session.scalars(select(JobInput).where(JobInput.job_id == job.id)).all():
        version = session.get(DatasetVersion, pinned.version_id) if pinned.version_id else None
        dataset = session.get(Dataset, pinned.dataset_id) if pinned.dataset_id else None
        if (
            version is None
            or dataset is None
            or dataset.shredded_at is not None
            or dataset.wrapped_key is None
        ):
            raise Refused(f"input {pinned.address}@{pinned.version_number} no longer exists")
        if version.manifest_sha256 != pinned.version_manifest_sha256:
            raise Refused(
                f"input {pinned.address}@{pinned.version_number} changed since the job was submitted"
            )
        if dataset.project_id != job.project_id and not _still_shared(session, dataset.id, job.project_id):
            raise Refused(f"input {pinned.address} is no longer shared with this project")
    return manifest


def _still_shared(session: Session, dataset_id: int, project_id: int) -> bool:
    from sanctum.db.models import Share

    return (
        session.scalar(
            select(Share.id).where(
                Share.dataset_id == dataset_id,
                Share.target_project_id == project_id,
                Share.state == "accepted",
            )
        )
        is not None
    )
