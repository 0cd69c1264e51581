"""The server's half of the Slurm executor: submit queued Slurm jobs, and notice how they end.

Why the server only submits and watches: the node does the work (``sanctum node run``) and reports
back; but a node can die mid-job or its Prolog can refuse the job, and then nothing reports. The
watcher turns what Slurm says into a clear end: a job held after a failed Prolog is cancelled and
``rejected``, a job gone from Slurm without a result is ``failed``, never left running forever.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update

from sanctum.db.models import Project
from sanctum.jobs import manifest as manifests
from sanctum.jobs import slurm
from sanctum.jobs.models import Job, NodeKeyGrant
from sanctum.jobs.runner import Outcome, finish_job, signer_context
from sanctum.jobs.service import job_key
from sanctum.jobs.slurm_script import batch_script, spool_dir
from sanctum.jobs.states import JobState

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0
class SlurmDispatcher:
    def __init__(self, runtime: object) -> None:
        from sanctum.api.runtime import Runtime

        assert isinstance(runtime, Runtime)
        settings = runtime.settings
        assert settings.slurm_partition and settings.slurm_spool_dir
        self.runtime = runtime
        self.slurm = slurm.SlurmSettings(partition=settings.slurm_partition, conf=settings.slurm_conf)
        self.spool = settings.slurm_spool_dir
        self.server_url = settings.public_url or f"http://{settings.host}:{settings.port}"
        self.sanctum_bin = str(Path(sys.executable).with_name("sanctum"))
        self.node_dir = settings.slurm_node_dir
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sanctum-slurm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(10)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("slurm dispatcher error")
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def tick(self) -> None:
        while self.submit_one():
            pass
        self.watch()

    def submit_one(self) -> bool:
        runtime = self.runtime
        with runtime.db.session() as session:
            job = session.scalar(
                select(Job)
                .where(Job.state == JobState.QUEUED, Job.executor == "slurm")
                .order_by(Job.id)
                .limit(1)
            )
            if job is None:
                return False
            won = session.execute(
                update(Job)
                .where(Job.id == job.id, Job.state == JobState.QUEUED)
                .values(state=JobState.RUNNING, started_at=datetime.now(UTC))
            ).rowcount
            if won != 1:
                return True
            project = session.get(Project, job.project_id)
            assert project is not None
            key = job_key(session, runtime.keyring, job, project)
            bundle = b"".join(runtime.store.open_range(job.bundle_blob_id or "", key))
            manifest = manifests.parse(json.loads(job.manifest))
            folder = spool_dir(self.spool, job.id)
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            (folder / "bundle.tar.gz").write_bytes(bundle)
            resources = manifest.resources
            try:
                slurm_id = slurm.submit(
                    self.slurm,
                    batch_script(
                        job.id, self.sanctum_bin, self.server_url, job.manifest_sha256, self.node_dir
                    ),
                    job_name=f"sanctum-{job.id}",
                    cpus=resources.cpus,
                    memory_mb=resources.memory_mb,
                    time_limit_s=resources.time_limit_s + 300,
                    workdir=folder,
                    output=folder / "slurm.out",
                )
            except slurm.SlurmError as exc:
                job.state = JobState.FAILED
                job.reason = f"Slurm refused the job: {exc}"[:500]
                job.ended_at = datetime.now(UTC)
                signer_context(session, job, project).record(
                    session, "job.finish", target=f"job:{job.number}", details={"state": job.state}
                )
                return True
            job.slurm_job_id = slurm_id
            signer_context(session, job, project).record(
                session,
                "job.start",
                target=f"job:{job.number}",
                details={"executor": "slurm", "slurm_job": slurm_id},
            )
        return True

    def watch(self) -> None:
        with self.runtime.db.session(write=False) as session:
            running = session.execute(
                select(Job.id, Job.slurm_job_id, Job.cancel_requested, NodeKeyGrant.id)
                .outerjoin(NodeKeyGrant, NodeKeyGrant.job_id == Job.id)
                .where(Job.state == JobState.RUNNING, Job.executor == "slurm", Job.slurm_job_id.is_not(None))
            ).all()
        for job_id, slurm_id, cancel, granted in running:
            try:
                seen = slurm.job(self.slurm, slurm_id)
            except slurm.SlurmError as exc:
                log.warning("could not ask Slurm about %s: %s", slurm_id, exc)
                continue
            if cancel and not seen.finished:
                # Record the cancel first: scancel's SIGTERM makes the node report "failed" at once.
                self._end(job_id, Outcome(JobState.CANCELLED, "cancelled while running on Slurm"))
                slurm.cancel(self.slurm, slurm_id)
            elif granted is not None and seen.state == "PENDING":
                # A node received the keys and the job is pending again: Slurm requeued it after the
                # node failed. Keys are sealed once, so a rerun could not start: end it plainly.
                slurm.cancel(self.slurm, slurm_id)
                self._end(
                    job_id,
                    Outcome(
                        JobState.FAILED,
                        "the node running the job failed (did the node die?) and Slurm requeued it; "
                        "no output was stored",
                    ),
                )
            elif seen.held:
                slurm.cancel(self.slurm, slurm_id)
                self._end(
                    job_id,
                    Outcome(
                        JobState.REJECTED,
                        "the node's Prolog refused the job: its signed manifest or code did not verify there",
                    ),
                )
            elif seen.finished:
                self._end(
                    job_id,
                    Outcome(
                        JobState.FAILED,
                        f"the Slurm job ended ({seen.state}) without a result "
                        "from the node (did the node die?); no output was stored",
                    ),
                )

    def _end(self, job_id: int, outcome: Outcome) -> None:
        with self.runtime.db.session(write=False) as session:
            job = session.get(Job, job_id)
            if job is None or job.state != JobState.RUNNING:
                return  # the node reported in the meantime
        finish_job(self.runtime, job_id, outcome)
        folder = spool_dir(self.spool, job_id)
        for path in folder.glob("*"):
            path.unlink(missing_ok=True)
        if folder.exists():
            os.rmdir(folder)
