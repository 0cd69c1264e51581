"""Compliance reports of a project (owners and auditors): the evidence the platform holds, as JSON.

Reading the report is itself recorded (``report.gdpr``): it gathers who worked on what.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sanctum.api.deps import AuditReader, DbSession, RuntimeDep, record_outside
from sanctum.dmp import report

router = APIRouter(prefix="/api/v1/projects/{project}/reports", tags=["reports"])


@router.get("/gdpr")
def gdpr_report(ctx: AuditReader, db: DbSession, runtime: RuntimeDep) -> dict[str, Any]:
    """Datasets with their legal flags and de-identification, access over time, shares, jobs,
    exports with reviews, retention and erasure, refusals, and the audit chain's state."""
    body = report.build(db, ctx.project, generated_by=ctx.principal.email)
    record_outside(runtime, ctx, "report.gdpr", target=ctx.project.name, details={"format": "json"})
    return body
