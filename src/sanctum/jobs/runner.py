"""The local executor: claims queued jobs, verifies them again, stages, sandboxes, records.

Why short transactions around a long, lock-free middle: a job can run for hours, and SQLite has one
writer; the runner claims the job (one UPDATE that only one runner can win), then stages and runs
it holding no database lock, then records the outcome, the output version and the audit events
in one final transaction. Staged plaintext is wiped in a ``finally``, whatever happened.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sanctum.access.permissions import Role
from sanctum.access.policy import Principal
from sanctum.audit import AuditContext
from sanctum.datasets import catalog, transfer
from sanctum.datasets.catalog import DatasetRef
from sanctum.db.models import Dataset, Membership, Project, User
from sanctum.jobs import outputs, staging, verify
from sanctum.jobs.environment import job_environment
from sanctum.jobs.models import Job, SigningKey
from sanctum.jobs.service import inputs_of, job_key
from sanctum.jobs.states import ACTIVE, JobState
from sanctum.projects.service import ProjectContext

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0


@dataclass
class Outcome:
    state: str
    reason: str
    exit_code: int | None = None


def signer_context(session: Session, job: Job, project: Project) -> ProjectContext:
    """The job acts for its signer: audit events and new versions carry the signer's name."""
    key = session.scalar(select(SigningKey).where(SigningKey.fingerprint == job.signer_fingerprint))
    user = session.get(User, key.user_id) if key else None
    user_id = user.id if user else 0
    role = session.scalar(
        select(Membership.role).where(Membership.project_id == project.id, Membership.user_id == user_id)
    )
    principal = Principal(
        user_id=user_id,
        email=user.email if user else "(deleted user)",
        is_admin=False,
        can_create_projects=False,
        token_id=0,
        token_kind="job",  # noqa: S106 - a kind of principal, not a secret
    )
    audit = AuditContext(actor_id=user.id if user else None, actor_email=principal.email, ip=None)
    return ProjectContext(project, Role(role) if role else Role.DATA_SCIENTIST, principal, audit)


class JobRunner:
    """Runs this server's local jobs in ``slots`` threads."""

    def __init__(self, runtime: object) -> None:
        from sanctum.api.runtime import Runtime

        assert isinstance(runtime, Runtime)
        self.runtime = runtime
        self.settings = runtime.settings
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        for slot in range(self.settings.job_slots):
            thread = threading.Thread(target=self._loop, name=f"sanctum-job-{slot}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_one()
            except Exception:  # a runner thread must survive any one job's failure
                log.exception("job runner error")
                ran = False
            if not ran:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()

    # -- one job ---------------------------------------------------------------------------------
    def claim(self) -> int | None:
        with self.runtime.db.session() as session:
            candidate = session.scalar(
                select(Job.id)
                .where(Job.state == JobState.QUEUED, Job.executor == "local")
                .order_by(Job.id)
                .limit(1)
            )
            if candidate is None:
                return None
            won = session.execute(
                update(Job)
                .where(Job.id == candidate, Job.state == JobState.QUEUED)
                .values(state=JobState.RUNNING, started_at=datetime.now(UTC))
            ).rowcount
            return candidate if won == 1 else None

    def run_one(self) -> bool:
        job_id = self.claim()
        if job_id is None:
            return False
        self.execute(job_id)
        return True

    def execute(self, job_id: int) -> None:
        root = staging.job_dir(self.settings.data_dir, job_id)
        try:
            outcome = self._execute(job_id, root)
        except Exception as exc:
            log.exception("job %s failed in the executor", job_id)
            outcome = Outcome(JobState.FAILED, f"the executor failed: {type(exc).__name__}")
            self._finish(job_id, outcome, None, None)
        finally:
            staging.wipe(root)
        log.info("job %s ended: %s (%s)", job_id, outcome.state, outcome.reason)

    def _execute(self, job_id: int, root: Path) -> Outcome:
        from sanctum.jobs import sandbox

        runtime = self.runtime
        with runtime.db.session(write=False) as session:
            job = session.get(Job, job_id)
            assert job is not None
            project = session.get(Project, job.project_id)
            assert project is not None
            key = job_key(session, runtime.keyring, job, project)
            bundle = b"".join(runtime.store.open_range(job.bundle_blob_id or "", key))
            number = job.number
            try:
                manifest = verify.for_run(session, job, bundle)
            except verify.Refused as exc:
                outcome = Outcome(JobState.REJECTED, exc.reason)
                self._finish(job_id, outcome, None, None)
                return outcome
            staged = staging.stage(
                session,
                runtime.store,
                runtime.keyring,
                data_dir=self.settings.data_dir,
                job_id=job_id,
                bundle=bundle,
                inputs=inputs_of(session, job),
                max_bundle_bytes=self.settings.max_bundle_bytes,
                sandbox_uid=self.settings.sandbox_uid,
                role=signer_context(session, job, project).role,
            )
        self._record_start(job_id, staged.bytes_staged)
        cancel = threading.Event()
        watcher = threading.Thread(target=self._watch_cancel, args=(job_id, cancel), daemon=True)
        watcher.start()
        resources = manifest.resources
        spec = sandbox.SandboxSpec(
            command=list(manifest.entrypoint),
            code_dir=staged.code,
            inputs=staged.inputs,
            output_dir=staged.output,
            limits=sandbox.Limits(
                cpus=resources.cpus,
                memory_mb=resources.memory_mb,
                time_seconds=resources.time_limit_s,
                output_mb=resources.output_mb,
            ),
            env=job_environment(manifest.parameters, job_number=number),
            log_dir=staged.logs,
            uid=self.settings.sandbox_uid,
            gid=self.settings.sandbox_uid,
        )
        try:
            result = sandbox.run(spec, cancel=cancel)
        finally:
            cancel.set()
        outcome = Outcome(result.state, result.reason, result.exit_code)
        logs = (outputs.read_log(result.stdout_path), outputs.read_log(result.stderr_path))
        collected = None
        if outcome.state == JobState.SUCCEEDED:
            with runtime.db.session(write=False) as session:
                job = session.get(Job, job_id)
                dataset = (
                    session.get(Dataset, job.output_dataset_id) if job and job.output_dataset_id else None
                )
                if dataset is None or dataset.wrapped_key is None:
                    outcome = Outcome(JobState.FAILED, "the output dataset was deleted while the job ran")
                else:
                    data_key = runtime.keyring.dataset_key(session, dataset)
                    collected = outputs.collect(staged.output, runtime.store, data_key)
        self._finish(job_id, outcome, logs, collected)
        return outcome

    def _watch_cancel(self, job_id: int, cancel: threading.Event) -> None:
        while not cancel.wait(1.0):
            with self.runtime.db.session(write=False) as session:
                if session.scalar(select(Job.cancel_requested).where(Job.id == job_id)):
                    cancel.set()

    def _record_start(self, job_id: int, staged_bytes: int) -> None:
        with self.runtime.db.session() as session:
            job = session.get(Job, job_id)
            project = session.get(Project, job.project_id) if job else None
            assert job is not None and project is not None
            ctx = signer_context(session, job, project)
            ctx.record(
                session,
                "job.start",
                target=f"job:{job.number}",
                details={"executor": job.executor, "staged_bytes": staged_bytes},
            )

    def _finish(
        self,
        job_id: int,
        outcome: Outcome,
        logs: tuple[bytes, bytes] | None,
        collected: outputs.Collected | None,
    ) -> None:
        finish_job(self.runtime, job_id, outcome, logs=logs, collected=collected)


def finish_job(
    runtime: object,
    job_id: int,
    outcome: Outcome,
    *,
    logs: tuple[bytes, bytes] | None = None,
    log_blobs: tuple[str | None, str | None] | None = None,
    collected: outputs.Collected | None = None,
) -> None:
    """Record how a job ended, its logs and its output version, in one transaction with the audit."""
    from sanctum.api.runtime import Runtime

    assert isinstance(runtime, Runtime)
    with runtime.db.session() as session:
        job = session.get(Job, job_id)
        project = session.get(Project, job.project_id) if job else None
        assert job is not None and project is not None
        if job.state not in ACTIVE:
            return  # already ended (a node's report and the Slurm watcher can race)
        ctx = signer_context(session, job, project)
        if logs is not None:
            key = job_key(session, runtime.keyring, job, project)
            job.stdout_blob_id = runtime.store.put_stream([logs[0]], key).blob_id
            job.stderr_blob_id = runtime.store.put_stream([logs[1]], key).blob_id
        elif log_blobs is not None:
            job.stdout_blob_id, job.stderr_blob_id = log_blobs
        details: dict[str, object] = {"state": outcome.state, "reason": outcome.reason}
        if collected is not None:
            if collected.skipped:
                outcome.reason += f"; skipped {len(collected.skipped)} entries that are not plain files"
            if collected.metrics_problem:
                outcome.reason += f"; {collected.metrics_problem} (metrics ignored)"
            if collected.metrics is not None:
                job.metrics = json.dumps(collected.metrics, sort_keys=True)
            if collected.files:
                details["output"] = f"{job.output_name}@{_record_outputs(session, ctx, job, collected)}"
            else:
                outcome.reason = "succeeded; the job wrote nothing to /output, so no output version"
        job.state = outcome.state
        job.reason = outcome.reason
        job.ended_at = datetime.now(UTC)
        details["exit_code"] = outcome.exit_code
        ctx.record(session, "job.finish", target=f"job:{job.number}", details=details)


def _record_outputs(session: Session, ctx: ProjectContext, job: Job, collected: outputs.Collected) -> int:
    dataset = session.get(Dataset, job.output_dataset_id)
    assert dataset is not None
    ref = DatasetRef(dataset, ctx.project)
    version = catalog.new_version(session, ctx, ref)
    for path, info in collected.files:
        transfer.attach(session, ctx, ref, version.number, path, info)
    catalog.commit(session, ctx, ref, version.number)
    job.output_version_id = version.id
    return version.number


def recover(runtime: object) -> int:
    """At start-up: local jobs a crash left 'running' end failed, and staged plaintext is wiped."""
    from sanctum.api.runtime import Runtime

    assert isinstance(runtime, Runtime)
    count = 0
    with runtime.db.session() as session:
        stuck = session.scalars(
            select(Job).where(Job.state == JobState.RUNNING, Job.executor == "local")
        ).all()
        for job in stuck:
            project = session.get(Project, job.project_id)
            assert project is not None
            job.state = JobState.FAILED
            job.reason = "the server stopped while the job ran; its staged data was wiped"
            job.ended_at = datetime.now(UTC)
            signer_context(session, job, project).record(
                session,
                "job.finish",
                target=f"job:{job.number}",
                details={"state": job.state, "reason": job.reason},
            )
            count += 1
    staging.wipe_stale(runtime.settings.data_dir, keep=set())
    return count
