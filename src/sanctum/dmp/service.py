"""A project's DMP versions: set a new one (data owners), read the one in force and the history.

Why a new version refuses rather than repairs: a DMP that does not follow the standard, or whose
retention date has already passed for live data, is an owner's mistake or an owner's decision to
erase. The first is refused with every problem and its path, nothing stored; the second needs
``confirm_shred`` (the datasets then go at the next lifecycle run). Setting a version and what it
changes at once (shares of datasets the plan now calls ``closed`` end) are one transaction with
their audit events.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import rfc8785
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sanctum.datasets import sharing
from sanctum.db.models import Dataset, Share
from sanctum.dmp import extension, standard
from sanctum.dmp.models import DmpVersion
from sanctum.dmp.plan import DatasetRules, Plan
from sanctum.errors import Conflict, InvalidInput, NotFound
from sanctum.projects.service import ProjectContext

WARN_DAYS = 30


class DmpInvalid(InvalidInput):
    """The document is not a valid DMP; ``problems`` lists each one with its JSON path."""

    code = "dmp_invalid"

    def __init__(self, exc: standard.NotAStandardDmp) -> None:
        super().__init__(str(exc))
        self.standard = exc.standard
        self.problems = exc.problems


def today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class Validated:
    """A document that passed both the standard and Sanctum's extension."""

    standard: str
    document: dict[str, Any]
    canonical: bytes
    controls: extension.Controls

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical).hexdigest()

    def plan(self, version: int | None = None) -> Plan:
        return Plan.from_document(self.document["dmp"], self.controls, version)


def validate(document: Any, standard_version: str | None = None) -> Validated:
    """Standard, then extension, then canonical form; DmpInvalid lists every problem found."""
    try:
        checked = standard.validate(document, standard_version)
    except standard.NotAStandardDmp as exc:
        raise DmpInvalid(exc) from None
    controls, problems = extension.read(checked.dmp)
    if problems:
        raise DmpInvalid(standard.NotAStandardDmp(checked.standard, problems))
    try:
        canonical = rfc8785.dumps(document)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        problem = standard.Problem("$", f"not canonical JSON: {exc}")
        raise DmpInvalid(standard.NotAStandardDmp(checked.standard, [problem])) from None
    return Validated(checked.standard, document, canonical, controls)


# --------------------------------------------------------------------------- reading


def current(session: Session, project_id: int) -> DmpVersion | None:
    return session.scalar(
        select(DmpVersion)
        .where(DmpVersion.project_id == project_id)
        .order_by(DmpVersion.number.desc())
        .limit(1)
    )


def version_in_force(session: Session, project_id: int) -> int | None:
    return session.scalar(select(func.max(DmpVersion.number)).where(DmpVersion.project_id == project_id))


def history(session: Session, project_id: int) -> list[DmpVersion]:
    return list(
        session.scalars(
            select(DmpVersion).where(DmpVersion.project_id == project_id).order_by(DmpVersion.number.desc())
        ).all()
    )


def load(session: Session, project_id: int, number: int) -> DmpVersion:
    row = session.scalar(
        select(DmpVersion).where(DmpVersion.project_id == project_id, DmpVersion.number == number)
    )
    if row is None:
        raise NotFound("no such DMP version", code="no_dmp")
    return row


@functools.lru_cache(maxsize=256)
def _plan_of(sha256: str, number: int, document: str) -> Plan:
    del sha256  # the cache key: a version's document never changes
    dmp = json.loads(document)["dmp"]
    controls, _ = extension.read(dmp)
    return Plan.from_document(dmp, controls, number)


def plan_of(row: DmpVersion | None) -> Plan:
    return Plan() if row is None else _plan_of(row.sha256, row.number, row.document)


def plan_for(session: Session, project_id: int) -> Plan:
    """The plan in force for a project; an empty Plan (no rules) when it has none."""
    return plan_of(current(session, project_id))


def document_of(row: DmpVersion) -> dict[str, Any]:
    return json.loads(row.document)


def live_datasets(session: Session, project_id: int) -> list[Dataset]:
    return list(
        session.scalars(
            select(Dataset)
            .where(Dataset.project_id == project_id, Dataset.shredded_at.is_(None))
            .order_by(Dataset.name)
        ).all()
    )


def governed(session: Session, project_id: int, plan: Plan) -> list[tuple[Dataset, DatasetRules]]:
    """The project's live datasets the plan describes, with their rules."""
    pairs = []
    for dataset in live_datasets(session, project_id):
        rules = plan.rules_for(dataset.name)
        if rules is not None:
            pairs.append((dataset, rules))
    return pairs


def due(
    pairs: list[tuple[Dataset, DatasetRules]], on: date, *, within_days: int = 0
) -> list[tuple[Dataset, date]]:
    """Datasets whose retention date is on or before ``on`` + ``within_days``."""
    limit = on + timedelta(days=within_days)
    return [
        (d, r.available_until)
        for d, r in pairs
        if r.available_until is not None and r.available_until <= limit
    ]


# --------------------------------------------------------------------------- setting


@dataclass
class SetResult:
    row: DmpVersion
    overdue: list[str] = field(default_factory=list)  # shredded at the next lifecycle run
    revoked_shares: list[int] = field(default_factory=list)


def set_version(
    session: Session,
    ctx: ProjectContext,
    document: Any,
    *,
    standard_version: str | None = None,
    confirm_shred: bool = False,
) -> SetResult:
    """Store ``document`` as the project's next DMP version (the caller holds the project row lock)."""
    valid = validate(document, standard_version)
    plan = valid.plan()
    pairs = governed(session, ctx.project.id, plan)
    overdue = [(d.name, until) for d, until in due(pairs, today())]
    if overdue and not confirm_shred:
        listed = ", ".join(f"{name} (available until {until.isoformat()})" for name, until in overdue)
        raise Conflict(
            f"the retention date of {listed} has passed: setting this plan erases "
            f"{'it' if len(overdue) == 1 else 'them'} (crypto-shredding) at the next lifecycle run. "
            "To accept that, set it again with confirm_shred=true (CLI: --confirm-shred)",
            code="retention_passed",
        )
    number = (version_in_force(session, ctx.project.id) or 0) + 1
    dmp = valid.document["dmp"]
    row = DmpVersion(
        project_id=ctx.project.id,
        number=number,
        standard=valid.standard,
        title=str(dmp.get("title", ""))[:500],
        document=valid.canonical.decode(),
        sha256=valid.sha256,
        confirm_shred=bool(overdue),
        created_by_id=ctx.principal.user_id,
        created_by_email=ctx.principal.email,
    )
    session.add(row)
    session.flush()
    result = SetResult(row, overdue=[name for name, _ in overdue])
    closed = [d.id for d, rules in pairs if rules.closed]
    if closed:
        active = session.scalars(
            select(Share.id).where(Share.dataset_id.in_(closed), Share.state.in_(["pending", "accepted"]))
        ).all()
        for share_id in active:
            sharing.revoke(session, ctx, share_id)
            result.revoked_shares.append(share_id)
    ctx.record(
        session,
        "dmp.set",
        target=f"dmp:{number}",
        details={
            "version": number,
            "sha256": row.sha256,
            "standard": row.standard,
            "datasets_governed": [d.name for d, _ in pairs],
            "shred_confirmed": result.overdue,
            "shares_revoked": result.revoked_shares,
        },
    )
    return result


def record_refusal(session: Session, ctx: ProjectContext, exc: InvalidInput | Conflict) -> None:
    """A refused version leaves only this event (no row, no document)."""
    details: dict[str, Any] = {"code": exc.code, "reason": exc.message[:500]}
    if isinstance(exc, DmpInvalid):
        details["problems"] = [str(p)[:200] for p in exc.problems[:10]]
    ctx.record(session, "dmp.set", outcome="denied", target="dmp", details=details)
