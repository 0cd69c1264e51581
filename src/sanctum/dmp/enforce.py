"""The checks other services make against the DMP in force: one place, one error code per rule.

- a dataset the plan marks ``personal_data`` or ``sensitive_data`` = ``yes`` takes no raw upload
  (``deid_required``): its data comes in through de-identifying ingest, which does not call this;
- a dataset whose distribution is ``closed`` is not shared with other projects (``dmp_closed``);
- a job runs only where every plan that governs it allows (``location_not_allowed``): the job's
  project's ``allowed_locations``, and for each input dataset its ``host.geo_location`` values and
  its owning project's ``allowed_locations``;
- the extension's export controls override the airlock's defaults (``export_rules``).

Refusals are audited by the caller (the action that was refused, outcome ``denied``), except
where this module changes state itself (a Slurm job rejected at its node).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.audit import AuditContext, record
from sanctum.db.models import Dataset, Project
from sanctum.dmp import service
from sanctum.dmp.plan import Plan, country
from sanctum.errors import Conflict, Denied
from sanctum.projects.service import ProjectContext

if TYPE_CHECKING:
    from sanctum.airlock.rules import ExportRules
    from sanctum.jobs.manifest import Manifest
    from sanctum.jobs.models import Job, JobInput, Node


def _version(plan: Plan) -> str:
    return f"DMP version {plan.version}"


# --------------------------------------------------------------------------- data in and out


def refuse_raw_upload(session: Session, owner_id: int, dataset: Dataset) -> None:
    """Denied (``deid_required``) when the owning project's plan marks the dataset personal/sensitive."""
    plan = service.plan_for(session, owner_id)
    rules = plan.rules_for(dataset.name)
    if rules is not None and rules.needs_deidentification:
        flags = [
            f
            for f, v in (("personal", rules.personal_data), ("sensitive", rules.sensitive_data))
            if v == "yes"
        ]
        raise Denied(
            f"dataset {dataset.name} holds {' and '.join(flags)} data ({_version(plan)}): its data must go "
            "through de-identifying ingest ('sanctum ingest'), not a raw upload",
            code="deid_required",
        )


def refuse_share(
    session: Session, ctx: ProjectContext, dataset: Dataset, *, target: str, action: str
) -> None:
    """Denied (``dmp_closed``, audited in the caller's transaction) for a dataset the plan calls closed."""
    plan = service.plan_for(session, dataset.project_id)
    rules = plan.rules_for(dataset.name)
    if rules is None or not rules.closed:
        return
    owner = session.get(Project, dataset.project_id)
    reason = (
        f"dataset {dataset.name} is 'closed' in the data management plan of project "
        f"{owner.name if owner else '?'} ({_version(plan)}): it is not shared with other projects"
    )
    details = {
        "dataset": dataset.name,
        "target_project": target,
        "code": "dmp_closed",
        "dmp_version": plan.version,
    }
    ctx.record(session, action, outcome="denied", target=f"dataset:{dataset.name}", details=details)
    if owner is not None and owner.id != ctx.project.id:
        record(
            session,
            ctx.audit,
            action,
            outcome="denied",
            project_id=owner.id,
            project_name=owner.name,
            target=f"dataset:{dataset.name}",
            details=details,
        )
    raise Denied(reason, code="dmp_closed", persist=True)


# --------------------------------------------------------------------------- compute locations


def location_refusal(
    session: Session, project_id: int, input_ids: Iterable[int | None], location: str
) -> str | None:
    """Why an executor at ``location`` may not run a job of ``project_id`` on these inputs, or None."""
    plans: dict[int, Plan] = {}

    def plan(pid: int) -> Plan:
        if pid not in plans:
            plans[pid] = service.plan_for(session, pid)
        return plans[pid]

    rules: list[tuple[str, frozenset[str]]] = []
    own = plan(project_id)
    if own.controls.allowed_locations:
        rules.append(
            (
                f"this project's {_version(own)} allows compute only in",
                frozenset(own.controls.allowed_locations),
            )
        )
    ids = [i for i in input_ids if i is not None]
    for dataset in (
        session.scalars(select(Dataset).where(Dataset.id.in_(ids)).order_by(Dataset.id)).all() if ids else []
    ):
        theirs = plan(dataset.project_id)
        if dataset.project_id != project_id and theirs.controls.allowed_locations:
            rules.append(
                (
                    f"the {_version(theirs)} of the project owning {dataset.name} allows compute only in",
                    frozenset(theirs.controls.allowed_locations),
                )
            )
        described = theirs.rules_for(dataset.name)
        if described is not None and described.locations is not None:
            rules.append(
                (f"input {dataset.name} may be processed only in ({_version(theirs)})", described.locations)
            )
    here = country(location)
    for why, allowed in rules:
        if here not in allowed:
            where = f"is in {here}" if here else "has no location set"
            return f"{why} {', '.join(sorted(allowed))}; this executor {where}"
    return None


def check_submission(
    session: Session, ctx: ProjectContext, manifest: Manifest, inputs: list[JobInput], *, local_location: str
) -> None:
    """At submit: a declared DMP version must be the one in force; a local job must be allowed here."""
    in_force = service.version_in_force(session, ctx.project.id)
    if manifest.dmp_version is not None and manifest.dmp_version != in_force:
        raise Conflict(
            f"the manifest was signed under DMP version {manifest.dmp_version} but version {in_force} is in "
            "force; sign a new manifest",
            code="dmp_version_mismatch",
        )
    if manifest.executor != "local":
        return  # a Slurm job is checked when its node asks for its plan and keys
    reason = location_refusal(session, ctx.project.id, [i.dataset_id for i in inputs], local_location)
    if reason is not None:
        raise Denied(f"the local executor may not run this job: {reason}", code="location_not_allowed")


def check_node(session: Session, node: Node, job: Job) -> None:
    """Before a node gets a job's plan or keys: its location must be allowed, else the job ends
    rejected (audited, in the caller's transaction) and the node gets nothing."""
    from sanctum.jobs.models import JobInput
    from sanctum.jobs.states import JobState

    inputs = session.scalars(select(JobInput.dataset_id).where(JobInput.job_id == job.id)).all()
    reason = location_refusal(session, job.project_id, inputs, node.location)
    if reason is None:
        return
    message = f"node {node.name} may not run this job: {reason}"
    job.state = JobState.REJECTED
    job.reason = message
    job.ended_at = datetime.now(UTC)
    project = session.get(Project, job.project_id)
    record(
        session,
        AuditContext(actor_email=f"node:{node.name}"),
        "job.finish",
        outcome="denied",
        project_id=job.project_id,
        project_name=project.name if project else None,
        target=f"job:{job.number}",
        details={
            "state": JobState.REJECTED.value,
            "reason": message,
            "code": "location_not_allowed",
            "node": node.name,
            "location": node.location,
        },
    )
    raise Denied(message, code="location_not_allowed", persist=True)


# --------------------------------------------------------------------------- the airlock


def export_rules(session: Session, project: Project, base: ExportRules) -> ExportRules:
    """``base`` with the extension's export controls of the DMP in force, and its version."""
    from sanctum.airlock.rules import normalise_name

    row = service.current(session, project.id)
    if row is None:
        return base
    controls = service.plan_of(row).controls
    changes: dict[str, object] = {"dmp_version": row.number}
    if controls.reviewers is not None:
        changes["approvals"] = controls.reviewers
    if controls.min_cell_count is not None:
        changes["min_cell_count"] = controls.min_cell_count
    if controls.max_rows is not None:
        changes["max_rows"] = controls.max_rows
    if controls.allowed_output_types is not None:
        changes["allowed_types"] = frozenset(controls.allowed_output_types)
    if controls.allow_images is not None:
        changes["allow_images"] = controls.allow_images
    if controls.identifier_columns:
        changes["identifier_columns"] = base.identifier_columns | {
            normalise_name(c) for c in controls.identifier_columns
        }
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]
