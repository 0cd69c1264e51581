"""Jobs: submit-to-start latency, sandbox overhead and staging throughput of the local executor.

    .venv/bin/python bench/jobs.py [--runs 10] [--mib 256]

Prints, each as a ratio against a floor measured in the same run:
- submit → start of a no-op local job through the real API and runner (in process), beside the
  same command run directly with subprocess;
- staging (decrypting a job's input into the private staging folder) in MiB/s, beside the store's
  own decrypt throughput of the same blob (target ≥ 0.8);
- the Slurm executor beside a bare ``sbatch`` is bench/jobs_slurm.py (it starts its own Slurm).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from sanctum.accounts.users import create_user
from sanctum.api.app import create_app
from sanctum.api.runtime import Runtime
from sanctum.audit import AuditContext
from sanctum.config import Settings
from sanctum.db.migrate import upgrade
from sanctum.jobs import staging
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


def staging_rate(runtime: Runtime, client: Client, mib: int) -> tuple[float, float]:
    data = os.urandom(mib * 1024 * 1024)
    client.create_dataset("bench", "blob")
    version = client.create_version("bench", "blob").number
    client.upload_file("bench", "blob", version, "blob.bin", data)
    client.commit_version("bench", "blob", version)
    from sqlalchemy import select

    from sanctum.db.models import Dataset, DatasetVersion, VersionFile

    with runtime.db.session(write=False) as db:
        dataset = db.scalar(select(Dataset).where(Dataset.name == "blob"))
        found = db.scalar(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id))
        entry = db.scalar(select(VersionFile).where(VersionFile.version_id == found.id))
        key = runtime.keyring.dataset_key(db, dataset)
        started = time.perf_counter()
        for _ in runtime.store.open_range(entry.blob_id, key):
            pass
        decrypt = time.perf_counter() - started
        pinned = JobInput(
            address="blob",
            dataset_id=dataset.id,
            version_id=found.id,
            version_number=1,
            version_manifest_sha256=found.manifest_sha256 or "",
        )
        import gzip
        import io
        import tarfile

        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo("noop.py")
            tar.addfile(info, io.BytesIO(b""))
        bundle = gzip.compress(raw.getvalue())
        started = time.perf_counter()
        staged = staging.stage(
            db,
            runtime.store,
            runtime.keyring,
            data_dir=runtime.settings.data_dir,
            job_id=999_999,
            bundle=bundle,
            inputs=[pinned],
            max_bundle_bytes=1 << 20,
            sandbox_uid=65534,
        )
        stage = time.perf_counter() - started
        staging.wipe(staged.root)
    return mib / decrypt, mib / stage


def direct(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runtime, http, client, key = _world(Path(tmp) / "data")
        code = Path(tmp) / "code"
        code.mkdir()
        (code / "noop.py").write_text("pass\n")
        submit_to_start(runtime, client, key, code, 2)  # warm up
        local = statistics.median(submit_to_start(runtime, client, key, code, args.runs))
        floor = statistics.median(direct(args.runs))
        print(
            f"submit → end of a no-op local job: {local * 1000:.0f} ms; `python -c pass` directly: "
            f"{floor * 1000:.0f} ms; overhead {1000 * (local - floor):.0f} ms (×{local / floor:.1f})"
        )
        decrypt, stage = staging_rate(runtime, client, args.mib)
        print(
            f"staging {args.mib} MiB: {stage:.0f} MiB/s; store decrypt alone {decrypt:.0f} MiB/s; "
            f"ratio {stage / decrypt:.2f} (target ≥ 0.8)"
        )
        print("the Slurm executor beside a bare sbatch: bench/jobs_slurm.py (needs root and slurm-wlm)")
        http.__exit__(None, None, None)
        runtime.close()


if __name__ == "__main__":
    main()
