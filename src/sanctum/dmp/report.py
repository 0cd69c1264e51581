"""The GDPR compliance report of a project: what the platform can show as evidence, as JSON.

Everything comes from the catalog and the audit trail, filtered to one project in SQL: the
datasets with the legal flags the DMP gives them and the de-identification their ingest applied,
who was a member when, shares, jobs with the DMP version they ran under, exports with their
reviews, retention dates and erasures, what the platform refused, and whether the audit chain
holds. The HTML form (``report_html``) is a rendering of this same dictionary, so the two never
disagree.

Why some things are held back: verdicts of an export still under review stay hidden (reviewers
must not see each other's verdict before theirs is in, and an owner may be a reviewer). Anonymity
figures are the reports stored with each table version at its commit (``sanctum.datasets.anonymity``,
counts only), shown for each table's latest version; a table whose policy declares no
quasi-identifiers has none, and the report says so rather than inventing a figure.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from sanctum.audit import verify
from sanctum.db.models import AuditEvent, Dataset, DatasetVersion, Membership, Project, Share, User
from sanctum.dmp import service
from sanctum.jobs.models import Job, JobInput, Node

LIMIT = 2000
ACCESS_ACTIONS = ("project.create", "member.add", "member.set_role", "member.remove")
ERASURE_ACTIONS = ("dataset.shred", "dmp.retention.shred", "dmp.retention.warn")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _emails(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(session.execute(select(User.id, User.email).where(User.id.in_(wanted))).all())


def _events(
    session: Session, project_id: int, actions: tuple[str, ...] | None = None, *, denied: bool = False
) -> list[dict[str, Any]]:
    query = select(AuditEvent).where(AuditEvent.project_id == project_id)
    if actions is not None:
        query = query.where(AuditEvent.action.in_(actions))
    if denied:
        query = query.where(AuditEvent.outcome == "denied")
    rows = session.scalars(query.order_by(AuditEvent.seq.desc()).limit(LIMIT)).all()
    return [
        {
            "seq": e.seq,
            "at": e.occurred_at,
            "actor": e.actor_email,
            "action": e.action,
            "target": e.target,
            "outcome": e.outcome,
            "details": json.loads(e.details),
        }
        for e in reversed(rows)
    ]


def _datasets(session: Session, project: Project, plan: Any) -> list[dict[str, Any]]:
    from sanctum.ingest.models import IngestSession

    datasets = session.scalars(
        select(Dataset).where(Dataset.project_id == project.id).order_by(Dataset.id)
    ).all()
    latest = (
        dict(
            session.execute(
                select(DatasetVersion.dataset_id, func.max(DatasetVersion.number))
                .where(
                    DatasetVersion.state == "committed",
                    DatasetVersion.dataset_id.in_([d.id for d in datasets]),
                )
                .group_by(DatasetVersion.dataset_id)
            ).all()
        )
        if datasets
        else {}
    )
    ingests: dict[int, list[dict[str, Any]]] = {}
    for ingest in session.scalars(
        select(IngestSession).where(IngestSession.project_id == project.id).order_by(IngestSession.number)
    ).all():
        ingests.setdefault(ingest.dataset_id, []).append(
            {
                "ingest": ingest.number,
                "version": ingest.version_number,
                "state": ingest.state,
                "finished_at": _iso(ingest.finished_at),
                "options": ingest.options,
                "counts": ingest.counts,
                "actions": ingest.actions,
            }
        )
    out = []
    for dataset in datasets:
        rules = None if dataset.shredded_at else plan.rules_for(dataset.name)
        out.append(
            {
                "name": dataset.name,
                "kind": dataset.kind,
                "created_at": _iso(dataset.created_at),
                "shredded_at": _iso(dataset.shredded_at),
                "latest_version": latest.get(dataset.id),
                "dmp": rules.as_dict() if rules else None,
                "deidentification": ingests.get(dataset.id, []),
            }
        )
    return out


def _anonymity(session: Session, project: Project) -> dict[str, Any]:
    """The stored report of each live table's latest version (or None: no quasi-identifiers)."""
    from sanctum.datasets.anonymity import VersionAnonymity

    latest = (
        select(DatasetVersion.dataset_id, func.max(DatasetVersion.number).label("number"))
        .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        .where(
            Dataset.project_id == project.id,
            Dataset.kind == "table",
            Dataset.shredded_at.is_(None),
            DatasetVersion.state == "committed",
        )
        .group_by(DatasetVersion.dataset_id)
        .subquery()
    )
    rows = session.execute(
        select(Dataset.name, DatasetVersion.number, VersionAnonymity)
        .join(latest, latest.c.dataset_id == Dataset.id)
        .join(
            DatasetVersion,
            (DatasetVersion.dataset_id == Dataset.id) & (DatasetVersion.number == latest.c.number),
        )
        .outerjoin(VersionAnonymity, VersionAnonymity.version_id == DatasetVersion.id)
        .order_by(Dataset.name)
        .limit(LIMIT)
    ).all()
    tables = [
        {"dataset": name, "version": number, "report": None}
        if stored is None
        else {
            "dataset": name,
            "version": number,
            "source": stored.source,
            "quasi_identifiers": stored.quasi_identifiers,
            "sensitive": stored.sensitive,
            "k_threshold": stored.k_threshold,
            "computed_at": _iso(stored.computed_at),
            "report": stored.report,
        }
        for name, number, stored in rows
    ]
    return {
        "available": any(t["report"] is not None for t in tables),
        "note": "anonymity reports (k-anonymity, l-diversity, re-identification risk) are stored with "
        "every table version when it is committed, over the quasi-identifiers its column policy "
        "declares (a fixed set for DICOM metadata tables); shown here for each table's latest version, "
        "counts only; a table without declared quasi-identifiers has none",
        "tables": tables,
    }


def _shares(session: Session, project_id: int) -> list[dict[str, Any]]:
    source, target = aliased(Project), aliased(Project)
    rows = session.execute(
        select(Share, Dataset.name, source.name, target.name)
        .join(Dataset, Dataset.id == Share.dataset_id)
        .join(source, source.id == Share.source_project_id)
        .join(target, target.id == Share.target_project_id)
        .where(or_(Share.source_project_id == project_id, Share.target_project_id == project_id))
        .order_by(Share.id)
        .limit(LIMIT)
    ).all()
    return [
        {
            "dataset": f"{src}.{name}",
            "direction": "out" if share.source_project_id == project_id else "in",
            "other_project": tgt if share.source_project_id == project_id else src,
            "access": share.access,
            "state": share.state,
            "created_at": _iso(share.created_at),
            "decided_at": _iso(share.decided_at),
            "revoked_at": _iso(share.revoked_at),
        }
        for share, name, src, tgt in rows
    ]


def _jobs(session: Session, project_id: int) -> list[dict[str, Any]]:
    jobs = session.scalars(
        select(Job).where(Job.project_id == project_id).order_by(Job.number.desc()).limit(LIMIT)
    ).all()
    emails = _emails(session, {j.submitted_by_id for j in jobs})
    nodes = dict(session.execute(select(Node.id, Node.name)).all()) if any(j.node_id for j in jobs) else {}
    inputs: dict[int, list[str]] = {}
    if jobs:
        for job_id, address, number in session.execute(
            select(JobInput.job_id, JobInput.address, JobInput.version_number).where(
                JobInput.job_id.in_([j.id for j in jobs])
            )
        ).all():
            inputs.setdefault(job_id, []).append(f"{address}@{number}")
    return [
        {
            "number": j.number,
            "state": j.state,
            "reason": j.reason,
            "executor": j.executor,
            "node": nodes.get(j.node_id) if j.node_id else None,
            "submitted_by": emails.get(j.submitted_by_id or 0),
            "created_at": _iso(j.created_at),
            "ended_at": _iso(j.ended_at),
            "inputs": inputs.get(j.id, []),
            "output": j.output_name,
            "dmp_version": j.dmp_version,
            "manifest_sha256": j.manifest_sha256,
        }
        for j in reversed(jobs)
    ]


def _airlock(session: Session, project_id: int) -> dict[str, Any]:
    try:
        from sanctum.airlock.models import ExportFile, ExportRequest, ExportReview, ImportRequest
        from sanctum.airlock.states import UNDER_REVIEW
    except ImportError:  # a platform without the airlock
        return {"available": False, "exports": [], "imports": []}
    requests = session.scalars(
        select(ExportRequest)
        .where(ExportRequest.project_id == project_id, ExportRequest.state != "draft")
        .order_by(ExportRequest.number)
        .limit(LIMIT)
    ).all()
    ids = [r.id for r in requests]
    files = session.scalars(
        select(ExportFile).where(ExportFile.request_id.in_(ids)).order_by(ExportFile.id)
    ).all()
    reviews = session.scalars(
        select(ExportReview).where(ExportReview.request_id.in_(ids)).order_by(ExportReview.id)
    ).all()
    imports = session.scalars(
        select(ImportRequest)
        .where(ImportRequest.project_id == project_id)
        .order_by(ImportRequest.number)
        .limit(LIMIT)
    ).all()
    people = {r.requested_by_id for r in requests} | {r.released_by_id for r in requests}
    people |= (
        {v.reviewer_id for v in reviews}
        | {i.requested_by_id for i in imports}
        | {i.decided_by_id for i in imports}
    )
    emails = _emails(session, people)
    names = {f.id: f.name for f in files}
    exports = []
    for r in requests:
        hidden = r.state in UNDER_REVIEW
        exports.append(
            {
                "number": r.number,
                "title": r.title,
                "state": r.state,
                "requested_by": emails.get(r.requested_by_id or 0),
                "submitted_at": _iso(r.submitted_at),
                "decided_at": _iso(r.decided_at),
                "released_at": _iso(r.released_at),
                "released_by": emails.get(r.released_by_id or 0),
                "required_approvals": r.required_approvals,
                "dmp_version": r.dmp_version,
                "files": [
                    {
                        "name": f.name,
                        "sha256": f.sha256,
                        "size": f.size,
                        "check": f.check_verdict,
                        "job": f.job_number,
                        "overridden": f.override_reason is not None,
                    }
                    for f in files
                    if f.request_id == r.id
                ],
                "reviews_hidden": hidden,
                "reviews": [
                    {
                        "file": names.get(v.file_id),
                        "reviewer": emails.get(v.reviewer_id or 0),
                        "verdict": None if hidden else v.verdict,
                        "at": _iso(v.created_at),
                    }
                    for v in reviews
                    if v.request_id == r.id
                ],
            }
        )
    return {
        "available": True,
        "exports": exports,
        "imports": [
            {
                "number": i.number,
                "dataset": i.dataset_name,
                "state": i.state,
                "sha256": i.sha256,
                "requested_by": emails.get(i.requested_by_id or 0),
                "decided_by": emails.get(i.decided_by_id or 0),
                "created_at": _iso(i.created_at),
                "decided_at": _iso(i.decided_at),
            }
            for i in imports
        ],
    }


def build(session: Session, project: Project, *, generated_by: str) -> dict[str, Any]:
    """The whole report for one project (callers authorise: owners and auditors)."""
    row = service.current(session, project.id)
    plan = service.plan_of(row)
    members = session.execute(
        select(User.email, Membership.role, Membership.created_at)
        .join(User, User.id == Membership.user_id)
        .where(Membership.project_id == project.id)
        .order_by(User.email)
    ).all()
    governed = service.governed(session, project.id, plan)
    today = service.today()
    chain = verify(session)
    return {
        "report": "sanctum.gdpr-report/v1",
        "generated_at": _iso(datetime.now(UTC)),
        "generated_by": generated_by,
        "project": {"name": project.name, "title": project.title, "created_at": _iso(project.created_at)},
        "dmp": None
        if row is None
        else {
            "version": row.number,
            "standard": row.standard,
            "title": row.title,
            "sha256": row.sha256,
            "set_by": row.created_by_email,
            "set_at": _iso(row.created_at),
            "versions": len(service.history(session, project.id)),
            "controls": plan.controls.model_dump(exclude_none=True),
            "described_but_absent": plan.unmatched(
                d.name for d in service.live_datasets(session, project.id)
            ),
        },
        "datasets": _datasets(session, project, plan),
        "anonymity": _anonymity(session, project),
        "access": {
            "members": [{"email": e, "role": r, "since": _iso(c)} for e, r, c in members],
            "history": _events(session, project.id, ACCESS_ACTIONS),
        },
        "shares": _shares(session, project.id),
        "jobs": _jobs(session, project.id),
        "airlock": _airlock(session, project.id),
        "retention": {
            "datasets": [
                {
                    "dataset": d.name,
                    "available_until": r.available_until.isoformat(),
                    "status": "overdue"
                    if r.available_until <= today
                    else "expiring"
                    if (r.available_until - today).days <= service.WARN_DAYS
                    else "scheduled",
                }
                for d, r in governed
                if r.available_until is not None
            ],
            "events": _events(session, project.id, ERASURE_ACTIONS),
        },
        "refusals": _events(session, project.id, denied=True),
        "audit_chain": {
            "ok": chain.ok,
            "events": chain.events,
            "head_hash": chain.head_hash,
            "first_broken_seq": chain.first_broken_seq,
            "reason": chain.reason,
        },
    }
