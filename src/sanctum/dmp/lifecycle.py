"""Retention: crypto-shred datasets whose DMP retention date has come, and warn owners before.

``run`` is what ``sanctum lifecycle run`` and the server's daily thread call. For every project
with a DMP it finds the datasets the plan governs whose ``available_until`` is today or earlier
(shredded) or within ``WARN_DAYS`` (a ``dmp.retention.warn`` audit event, once per dataset and
date; ``GET …/dmp/status`` lists them too).

Why one transaction per dataset: a crash (or a kill) in the middle of a run leaves every dataset
either intact or fully shredded — its key, manifests and name gone together with the audit event
— never half. Blob files are deleted only after the commit, as housekeeping: without the key they
are noise already, and files a crash left behind are removed as orphans by the next start-up
cleanup or ``sanctum fsck``. Each dataset is re-checked under a lock inside its transaction, so
several servers (or a server and a cron job) running at once shred and warn once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.access.permissions import Role
from sanctum.access.policy import Principal
from sanctum.audit import AuditContext
from sanctum.datasets import shred
from sanctum.datasets.catalog import DatasetRef
from sanctum.db.models import AuditEvent, Dataset, Project
from sanctum.dmp import service
from sanctum.dmp.models import DmpVersion
from sanctum.projects.service import ProjectContext

log = logging.getLogger("sanctum.lifecycle")
ACTOR = "sanctum lifecycle"
FIRST_RUN_DELAY_S = 60.0  # after start-up, so a restart loop does not hammer the catalog


@dataclass
class RunReport:
    on: date
    shredded: list[dict[str, Any]] = field(default_factory=list)
    warned: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "on": self.on.isoformat(),
            "shredded": self.shredded,
            "warned": self.warned,
            "failed": self.failed,
        }


def system_context(project: Project) -> ProjectContext:
    """The lifecycle acts as itself, with an owner's rights in the one project it works on."""
    principal = Principal(
        user_id=0,
        email=ACTOR,
        is_admin=False,
        can_create_projects=False,
        token_id=0,
        token_kind="lifecycle",  # noqa: S106 - a kind of principal, not a secret
    )
    return ProjectContext(project, Role.DATA_OWNER, principal, AuditContext(actor_email=ACTOR))


def run(runtime: Any, on: date | None = None) -> RunReport:
    """One pass over every project with a DMP; failures of one dataset do not stop the others."""
    report = RunReport(on or service.today())
    with runtime.db.session(write=False) as session:
        project_ids = list(
            session.scalars(select(DmpVersion.project_id).distinct().order_by(DmpVersion.project_id))
        )
    for project_id in project_ids:
        with runtime.db.session(write=False) as session:
            plan = service.plan_for(session, project_id)
            pairs = service.governed(session, project_id, plan)
            overdue = [(d.id, until) for d, until in service.due(pairs, report.on)]
            soon = [
                (d.id, until)
                for d, until in service.due(pairs, report.on, within_days=service.WARN_DAYS)
                if until > report.on
            ]
        for dataset_id, _until in overdue:
            _shred_one(runtime, project_id, dataset_id, report)
        for dataset_id, until in soon:
            _warn_one(runtime, project_id, dataset_id, until, report)
    return report


def _locked(session: Session, project_id: int, dataset_id: int) -> tuple[Project, Dataset] | None:
    """The project row (serialises concurrent runs) and the dataset, if it is still live."""
    project = session.scalar(select(Project).where(Project.id == project_id).with_for_update())
    dataset = session.scalar(
        select(Dataset).where(Dataset.id == dataset_id, Dataset.shredded_at.is_(None)).with_for_update()
    )
    return (project, dataset) if project is not None and dataset is not None else None


def _shred_one(runtime: Any, project_id: int, dataset_id: int, report: RunReport) -> None:
    try:
        with runtime.db.session() as session:
            found = _locked(session, project_id, dataset_id)
            if found is None:
                return  # shredded meanwhile (another run, or an owner)
            project, dataset = found
            plan = service.plan_for(session, project_id)
            rules = plan.rules_for(dataset.name)
            if rules is None or rules.available_until is None or rules.available_until > report.on:
                return  # the plan changed since the listing
            ctx = system_context(project)
            name = dataset.name
            blobs = shred.shred_dataset(session, ctx, DatasetRef(dataset, project), confirm=name)
            entry = {
                "project": project.name,
                "dataset": name,
                "available_until": rules.available_until.isoformat(),
                "dmp_version": plan.version,
                "blobs": len(blobs),
            }
            ctx.record(session, "dmp.retention.shred", target=name, details=entry)
    except Exception as exc:  # one dataset's failure is reported, the run goes on
        log.exception("lifecycle: shredding dataset %s of project %s failed", dataset_id, project_id)
        report.failed.append({"project_id": project_id, "dataset_id": dataset_id, "error": str(exc)[:300]})
        return
    for blob_id in blobs:  # housekeeping only: the key is gone with the commit above
        runtime.store.delete(blob_id)
    report.shredded.append(entry)


def _warn_one(runtime: Any, project_id: int, dataset_id: int, until: date, report: RunReport) -> None:
    with runtime.db.session() as session:
        found = _locked(session, project_id, dataset_id)
        if found is None:
            return
        project, dataset = found
        target = f"{dataset.name} until {until.isoformat()}"
        already = session.scalar(
            select(AuditEvent.seq)
            .where(
                AuditEvent.project_id == project_id,
                AuditEvent.action == "dmp.retention.warn",
                AuditEvent.target == target,
            )
            .limit(1)
        )
        if already is not None:
            return
        entry = {
            "project": project.name,
            "dataset": dataset.name,
            "available_until": until.isoformat(),
            "days_left": (until - report.on).days,
            "dmp_version": service.version_in_force(session, project_id),
        }
        system_context(project).record(session, "dmp.retention.warn", target=target, details=entry)
    report.warned.append(entry)


class LifecycleScheduler:
    """The server's daily run: a thread started by the app's lifespan and stopped with it."""

    def __init__(self, runtime: Any, *, interval_s: float, first_delay_s: float = FIRST_RUN_DELAY_S) -> None:
        self.runtime = runtime
        self.interval_s = interval_s
        self.first_delay_s = first_delay_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sanctum-lifecycle", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        if self._stop.wait(self.first_delay_s):
            return
        while not self._stop.is_set():
            try:
                result = run(self.runtime)
                if result.shredded or result.warned or result.failed:
                    log.info(
                        "lifecycle: %d shredded, %d warned, %d failed",
                        len(result.shredded),
                        len(result.warned),
                        len(result.failed),
                    )
            except Exception:  # the thread must outlive a bad day (a database restart)
                log.exception("lifecycle run failed")
            self.runs += 1
            if self._stop.wait(self.interval_s):
                return
