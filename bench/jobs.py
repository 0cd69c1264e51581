"""Jobs: sandbox start, submit-to-end latency and staging throughput of the local executor.

    .venv/bin/python bench/jobs.py [--runs 10] [--mib 256] [--repeats 5]

Prints, each beside a floor measured in the same run:
- sandbox start: ``sandbox.run`` of ``python -c pass`` with the SandboxSpec the runner builds
  (its default limits, job environment and sandbox uid), beside the same command run directly,
  alternating, medians; the difference is what the sandbox adds (target < 100 ms);
- submit → end of a no-op local job through the real API and runner (in process): everything
  around the sandbox too (signature checks, staging, recording the outcome and the logs);
- staging (``staging.stage``: decrypting a job's input into the private staging folder) in MiB/s,
  beside the store's best decrypt of the same blob into memory: serial (``open_range``) and
  parallel (``decrypt_parallel``), the plaintext discarded. The ratio is against the faster of the
  two (target ≥ 0.8). Also CPU per MiB, which the shared machine's load disturbs less, and the
  write of the same number of bytes into a new file of the staging folder alone, which is what
  staging does beyond decrypting;
- the Slurm executor beside a bare ``sbatch`` is bench/jobs_slurm.py (it starts its own Slurm).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from sanctum.accounts.users import create_user
from sanctum.api.app import create_app
from sanctum.api.runtime import Runtime
from sanctum.audit import AuditContext
from sanctum.config import Settings
from sanctum.db.migrate import upgrade
from sanctum.jobs import sandbox, staging
from sanctum.jobs.environment import job_environment
from sanctum.jobs.manifest import Resources
from sanctum.jobs.models import JobInput
from sanctum.jobs.runner import JobRunner
from sanctum.sdk import Client
from sanctum.sdk.jobs import public_key_text
from sanctum.security import signing
from sanctum.security.keys import create_master_key


def _world(root: Path) -> tuple[Runtime, TestClient, Client, object]:
    settings = Settings(data_dir=root, require_2fa="off")
    root.mkdir(parents=True, exist_ok=True)
    create_master_key(settings.resolved_master_key_file)
    upgrade(settings.resolved_database_url)
    runtime = Runtime.start(settings)
    runtime.jobs = JobRunner(runtime)  # driven by hand
    with runtime.db.session() as db:
        create_user(db, AuditContext(), "bench@example.org", "correct horse battery staple")
    http = TestClient(create_app(runtime=runtime))
    http.__enter__()
    client, _ = Client.login(
        "http://testserver", "bench@example.org", "correct horse battery staple", http=http
    )
    client.create_project("bench")
    key = signing.new_private_key()
    client.register_key(public_key_text(key))
    return runtime, http, client, key


def submit_to_start(runtime: Runtime, client: Client, key: object, code: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        job = client.submit_job("bench", code, key=key, entrypoint="python noop.py")  # type: ignore[arg-type]
        runtime.jobs.run_one()
        done = client.get_job("bench", job.id)
        assert done.state in ("succeeded",), done.reason
        times.append(time.perf_counter() - started)
    return times


Timings = dict[str, list[tuple[float, float]]]  # per contender: (wall, CPU) seconds of each round


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def staging_rate(runtime: Runtime, client: Client, mib: int, repeats: int) -> Timings:
    """Alternates the floors and staging ``repeats`` times on the same blob; (wall, CPU) of each."""
    data = os.urandom(mib * 1024 * 1024)
    client.create_dataset("bench", "blob")
    version = client.create_version("bench", "blob").number
    client.upload_file("bench", "blob", version, "blob.bin", data)
    client.commit_version("bench", "blob", version)
    import gzip
    import io
    import tarfile

    from sqlalchemy import select

    from sanctum.db.models import Dataset, DatasetVersion, VersionFile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("noop.py")
        tar.addfile(info, io.BytesIO(b""))
    bundle = gzip.compress(raw.getvalue())
    store = runtime.store
    piece = memoryview(data)[: 1 << 20]
    times: Timings = {"serial": [], "parallel": [], "stage": [], "write": []}
    with runtime.db.session(write=False) as db:
        dataset = db.scalar(select(Dataset).where(Dataset.name == "blob"))
        found = db.scalar(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id))
        entry = db.scalar(select(VersionFile).where(VersionFile.version_id == found.id))
        key = runtime.keyring.dataset_key(db, dataset)
        pinned = JobInput(
            address="blob",
            dataset_id=dataset.id,
            version_id=found.id,
            version_number=1,
            version_manifest_sha256=found.manifest_sha256 or "",
        )

        def serial() -> None:
            for _ in store.open_range(entry.blob_id, key):
                pass

        def parallel() -> None:
            store.decrypt_parallel(entry.blob_id, key, lambda offset, piece: None)

        def stage() -> None:
            staged = staging.stage(
                db,
                store,
                runtime.keyring,
                data_dir=runtime.settings.data_dir,
                job_id=999_999,
                bundle=bundle,
                inputs=[pinned],
                max_bundle_bytes=1 << 20,
                sandbox_uid=65534,
            )
            assert staged.bytes_staged == len(data)

        write_dir = staging.staging_root(runtime.settings.data_dir) / "bench-write"

        def write() -> None:
            """What staging adds to decrypting: as many bytes into a new preallocated file, 1 MiB per
            write from one buffer (a decrypting worker writes from its own reused buffer too)."""
            write_dir.mkdir(mode=0o700)
            fd = os.open(write_dir / "blob.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.posix_fallocate(fd, 0, len(data))
                for offset in range(0, len(data), len(piece)):
                    os.pwrite(fd, piece[: len(data) - offset], offset)
            finally:
                os.close(fd)

        serial()  # warm the blob's pages into the cache for every contender alike
        for _ in range(repeats):
            for name, fn in (("serial", serial), ("parallel", parallel), ("stage", stage), ("write", write)):
                times[name].append(_timed(fn))
                staging.wipe(staging.job_dir(runtime.settings.data_dir, 999_999))  # not timed
                shutil.rmtree(write_dir, ignore_errors=True)
    return times


def direct(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return times


def runner_spec(root: Path, settings: Settings) -> sandbox.SandboxSpec:
    """The SandboxSpec ``JobRunner._execute`` builds for a no-op job (default resources, no inputs)."""
    for name in ("code", "output", "logs"):
        shutil.rmtree(root / name, ignore_errors=True)
        (root / name).mkdir(mode=0o700, parents=True)
    resources = Resources()
    return sandbox.SandboxSpec(
        command=["python", "-c", "pass"],
        code_dir=root / "code",
        inputs={},
        output_dir=root / "output",
        limits=sandbox.Limits(
            cpus=resources.cpus,
            memory_mb=resources.memory_mb,
            time_seconds=resources.time_limit_s,
            output_mb=resources.output_mb,
        ),
        env=job_environment({}, job_number=1),
        log_dir=root / "logs",
        uid=settings.sandbox_uid,
        gid=settings.sandbox_uid,
    )


def sandbox_start(root: Path, settings: Settings, runs: int) -> tuple[list[float], list[float]]:
    """(direct, sandboxed) wall times of ``python -c pass``, alternating, after one warm-up each."""
    plain, boxed = [], []
    for _ in range(runs + 1):
        plain.append(direct(1)[0])
        spec = runner_spec(root, settings)  # fresh folders, as each job has: not timed
        started = time.perf_counter()
        result = sandbox.run(spec, cancel=threading.Event())
        boxed.append(time.perf_counter() - started)
        if result.state != "succeeded":
            raise SystemExit(f"sandboxed no-op {result.state}: {result.reason}")
    return plain[1:], boxed[1:]


def _mib_s(mib: int, runs: list[tuple[float, float]]) -> float:
    return mib / statistics.median(wall for wall, _ in runs)


def _cpu_ms(mib: int, runs: list[tuple[float, float]]) -> float:
    return 1000 * statistics.median(cpu for _, cpu in runs) / mib


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of the staging comparison")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        runtime, http, client, key = _world(Path(tmp) / "data")
        plain, boxed = sandbox_start(Path(tmp) / "sandbox", runtime.settings, args.runs)
        floor, inside = statistics.median(plain), statistics.median(boxed)
        print(
            f"sandbox start: `python -c pass` in sandbox.run {inside * 1000:.0f} ms, directly "
            f"{floor * 1000:.0f} ms; the sandbox adds {1000 * (inside - floor):.0f} ms (target < 100 ms)"
        )
        code = Path(tmp) / "code"
        code.mkdir()
        (code / "noop.py").write_text("pass\n")
        submit_to_start(runtime, client, key, code, 2)  # warm up
        local = statistics.median(submit_to_start(runtime, client, key, code, args.runs))
        print(
            f"submit → end of a no-op local job: {local * 1000:.0f} ms (API, checks, staging, sandbox, "
            f"recording); `python -c pass` directly: {floor * 1000:.0f} ms"
        )
        times = staging_rate(runtime, client, args.mib, args.repeats)
        mib = args.mib
        serial, parallel = _mib_s(mib, times["serial"]), _mib_s(mib, times["parallel"])
        stage, write = _mib_s(mib, times["stage"]), _mib_s(mib, times["write"])
        best = max(serial, parallel)
        print(
            f"store decrypt of {mib} MiB into memory (medians of {args.repeats}): serial {serial:.0f} MiB/s "
            f"({_cpu_ms(mib, times['serial']):.3f} CPU ms/MiB), parallel {parallel:.0f} MiB/s "
            f"({_cpu_ms(mib, times['parallel']):.3f} CPU ms/MiB)"
        )
        print(
            f"staging {mib} MiB: {stage:.0f} MiB/s ({_cpu_ms(mib, times['stage']):.3f} CPU ms/MiB); "
            f"ratio to the best decrypt {stage / best:.2f} (target ≥ 0.8)"
        )
        print(
            f"writing {mib} MiB of plaintext into a new file in the staging folder alone: {write:.0f} MiB/s "
            f"({_cpu_ms(mib, times['write']):.3f} CPU ms/MiB)"
        )
        print("the Slurm executor beside a bare sbatch: bench/jobs_slurm.py (needs root and slurm-wlm)")
        load = os.getloadavg()
        print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        http.__exit__(None, None, None)
        runtime.close()


if __name__ == "__main__":
    main()
