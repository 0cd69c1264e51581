"""DMP rows and plans as the wire schemas (shared by the API, the pages and the offline CLI)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sanctum.dmp.models import DmpVersion
from sanctum.dmp.plan import Plan
from sanctum.schemas.dmp import DatasetRulesPublic, DmpSummary, DmpVersionPublic, RetentionItem


def version_public(row: DmpVersion) -> DmpVersionPublic:
    return DmpVersionPublic(
        number=row.number,
        standard=row.standard,
        title=row.title,
        sha256=row.sha256,
        set_by=row.created_by_email,
        set_at=row.created_at,
        confirm_shred=row.confirm_shred,
    )


def summary(plan: Plan, existing: Iterable[str] | None) -> DmpSummary:
    """The rules per dataset: for the project's ``existing`` datasets, or (offline, None) for each
    dataset the document describes, under the first name it would match."""
    if existing is None:
        names = sorted({min(e["keys"]) for e in plan.entries if e["keys"]})
        absent: list[str] = []
    else:
        existing = list(existing)
        names = existing
        absent = plan.unmatched(existing)
    rules = [r for r in (plan.rules_for(n) for n in names) if r is not None]
    return DmpSummary(
        datasets=[DatasetRulesPublic(**r.as_dict()) for r in rules],
        described_but_absent=absent,
        controls=plan.controls.model_dump(exclude_none=True),
    )


def retention_items(pairs: Iterable[tuple[str, date]], on: date) -> list[RetentionItem]:
    return [
        RetentionItem(dataset=name, available_until=until.isoformat(), days_left=(until - on).days)
        for name, until in sorted(pairs, key=lambda p: (p[1], p[0]))
    ]
