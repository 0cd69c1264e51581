"""Shared set-up for the airlock tests: job outputs with lineage, made quickly.

``job_output`` submits a real signed job through the API and ends it through the runner's own
``finish_job`` with real encrypted output blobs: the output version has the same lineage (job,
manifest hash, inputs, signer) a sandboxed run gives, without starting bubblewrap for every test.
The happy-path test runs a real sandboxed job instead.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from jobs_helpers import JobWorld, make_job_world
from sanctum.db.models import AuditEvent, Dataset, Project
from sanctum.jobs.models import Job
from sanctum.jobs.outputs import Collected
from sanctum.jobs.runner import JobRunner, Outcome, finish_job

# A frequency table that passes (every cell at least 10), one that fails (a 3), one with a zero.
SAFE_TABLE = b"sex,age_band,n\nF,18-40,25\nF,40-65,31\nM,18-40,22\nM,40-65,40\n"
SMALL_CELL_TABLE = b"sex,age_band,n\nF,18-40,25\nF,40-65,3\nM,18-40,22\nM,40-65,40\n"
ZERO_CELL_TABLE = b"sex,age_band,n\nF,18-40,25\nF,40-65,0\nM,18-40,22\nM,40-65,40\n"


def parquet_bytes(columns: dict[str, list]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


@dataclass
class AirlockWorld:
    jw: JobWorld
    runtime: object
    client: object
    world: object

    @property
    def sdk(self):
        return self.jw.sdk

    def h(self, name: str) -> dict[str, str]:
        return self.world.h[name]


def quiet_runner(runtime) -> None:
    """A runner that is present but not started, so the app's lifespan starts none that would race
    the test's own ``finish_job`` (set before the test client starts the app)."""
    if runtime.jobs is None:
        runtime.jobs = JobRunner(runtime)


def make_airlock_world(runtime, client, world, people, tmp_path) -> AirlockWorld:
    return AirlockWorld(make_job_world(client, world, people, tmp_path), runtime, client, world)


def job_output(
    aw: AirlockWorld, files: dict[str, bytes], *, who: str = "scientist", output: str = "job-outputs"
):
    """A job of ``who`` whose output version holds ``files``; returns (dataset, version, job number)."""
    submitted = aw.sdk[who].submit_job(
        "alpha", aw.jw.code, key=aw.jw.keys[who], entrypoint="python job.py", inputs=["vitals"], output=output
    )
    runtime = aw.runtime
    with runtime.db.session() as db:
        project_id = db.scalar(select(Project.id).where(Project.name == "alpha"))
        job = db.scalar(select(Job).where(Job.project_id == project_id, Job.number == submitted.id))
        key = runtime.keyring.dataset_key(db, db.get(Dataset, job.output_dataset_id))
        job_id = job.id
    collected = Collected(
        files=[(path, runtime.store.put_stream([data], key)) for path, data in files.items()]
    )
    finish_job(runtime, job_id, Outcome("succeeded", "finished", 0), collected=collected)
    done = aw.sdk[who].get_job("alpha", submitted.id)
    assert done.state == "succeeded" and done.output is not None
    return done.output.dataset, done.output.version, submitted.id


def events(runtime, prefix: str) -> list[AuditEvent]:
    with runtime.db.session(write=False) as db:
        return list(
            db.scalars(
                select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.seq)
            ).all()
        )
