"""Ingest benchmark: end-to-end ``Client.ingest`` through a real ``sanctum serve``, against bare
de-identification of the same files in the same run.

    .venv/bin/python bench/ingest.py [--patients 100] [--instances 10] [--quick] [--dir PATH]

The corpus is synthetic: pydicom's CT_small and MR_small samples, each patient with its own name,
ID and UIDs (``--patients`` × ``--instances`` files, alternating CT and MR). Each figure on the
same files:

1. bare de-identification in this process, one core, two floors: the reference
   ``sanctum.deid.dicom.deidentify`` (a pydicom round trip) and ``deidentify_bytes``, the raw-bytes
   fast path the ingest worker de-identifies with;
2. the ingest worker function in this process, one core: ``pipeline.process`` (detection, one raw
   walk that de-identifies and gives the completeness check and the metadata row) and, for
   comparison, ``pipeline.process_reference`` (the worker before: two more pydicom parses);
3. ``sanctum ingest`` end to end: the SDK walks the folder and sends batches to a local server
   (SQLite, ``SANCTUM_INGEST_WORKERS=1`` so the figure is per worker process, then the default of
   one worker per core), which de-identifies, encrypts, stores, records and writes the metadata table.

The issue's target: end-to-end ≥ 0.7 × the bare de-identification rate (per core); the verdict is
printed against both floors. The end-to-end CPU is also split into the client, the server process
(receiving, storing, recording) and its worker processes (de-identifying).

``--dir`` puts the corpus, the data directory and the blob store there instead of the system's
temporary directory: on a filesystem where many files were deleted in the last minutes (a shared
/tmp), creating each blob's file costs more.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from sanctum.deid.dicom import deidentify
from sanctum.deid.dicom_raw import deidentify_bytes
from sanctum.deid.profile import Options
from sanctum.deid.pseudonyms import Pseudonymiser
from sanctum.ingest.pipeline import WorkItem, WorkSettings, process, process_reference
from sanctum.sdk import Client

PASSWORD = "bench ingest passphrase 2026"
OPTIONS = Options(longitudinal="modified")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def corpus(folder: Path, patients: int, instances: int) -> list[bytes]:
    samples = [pydicom.dcmread(get_testdata_file(n)) for n in ("CT_small.dcm", "MR_small.dcm")]
    files = []
    for p in range(patients):
        for i in range(instances):
            ds = samples[i % 2].copy()
            ds.PatientName, ds.PatientID = f"Bench^Patient{p}", f"BENCH{p:06}"
            ds.StudyInstanceUID = generate_uid(entropy_srcs=[f"study{p}"])
            ds.SeriesInstanceUID = generate_uid(entropy_srcs=[f"series{p}-{i % 2}"])
            ds.SOPInstanceUID = generate_uid(entropy_srcs=[f"sop{p}-{i}"])
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            target = folder / f"patient{p:05}" / f"IM{i:05}.dcm"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(out.getvalue())
            files.append(out.getvalue())
    return files


def rate(fn, files: list[bytes]) -> tuple[float, float]:
    """Files per second of wall time, and CPU milliseconds per file (this process)."""
    start, cpu = time.perf_counter(), time.process_time()
    for data in files:
        fn(data)
    return len(files) / (time.perf_counter() - start), (time.process_time() - cpu) * 1000 / len(files)


def tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds used so far by a process and by its children (the server, its worker pool)."""
    root = psutil.Process(pid)
    own = children = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        if proc.pid == pid:
            own = times.user + times.system
        else:
            children += times.user + times.system
    return own, children


def serve(sanctum: str, data: Path, env: dict[str, str], workers: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server_env = {**env, **({"SANCTUM_INGEST_WORKERS": str(workers)} if workers else {})}
    server = subprocess.Popen(
        [sanctum, "serve", "--data-dir", str(data), "--port", str(port)],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return server, url
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not start")


def end_to_end(
    sanctum: str, data: Path, env: dict[str, str], folder: Path, workers: int | None, name: str
) -> tuple[float, float, tuple[float, float, float]]:
    """Files/s of wall time, CPU ms per file of server, workers and client together, and of the
    client, the server process and the worker processes each."""
    server, url = serve(sanctum, data, env, workers)
    try:
        client, _ = Client.login(url, "bench@example.org", PASSWORD)
        with client:
            if not any(p.name == "bench" for p in client.list_projects()):
                client.create_project("bench")
            # warm the worker pool (spawned on the first batch) outside the measurement
            warm = folder.parent / f"warm-{name}"
            warm.mkdir()
            (warm / "a.dcm").write_bytes(next(folder.rglob("*.dcm")).read_bytes())
            client.ingest("bench", f"warm-{name}", warm, state_dir=folder.parent / "state")
            start, cpu, (server0, workers0) = time.perf_counter(), time.process_time(), tree_cpu(server.pid)
            report = client.ingest("bench", name, folder, state_dir=folder.parent / "state")
            seconds = time.perf_counter() - start
            client_cpu = time.process_time() - cpu
            server1, workers1 = tree_cpu(server.pid)
        files = report.counts["files"]
        assert report.counts["stored"] == files, report.counts
        parts = (client_cpu, server1 - server0, workers1 - workers0)
        return files / seconds, sum(parts) * 1000 / files, tuple(p * 1000 / files for p in parts)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="20 patients × 10 instances")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    args = parser.parse_args()
    if args.quick:
        args.patients, args.instances = 20, 10
    sanctum = str(Path(sys.executable).with_name("sanctum"))
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="sanctum-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        folder = root / "export"
        files = corpus(folder, args.patients, args.instances)
        print(f"{len(files)} files ({args.patients} patients × {args.instances}), {cores} cores", flush=True)
        key = os.urandom(32)
        p = Pseudonymiser(key)
        floor, floor_cpu = rate(lambda d: deidentify(d, p, OPTIONS), files)
        fast, fast_cpu = rate(lambda d: deidentify_bytes(d, p, OPTIONS), files)
        settings = WorkSettings(key, OPTIONS, "shift", None, False, 1 << 30)
        worker, worker_cpu = rate(lambda d: process(settings, WorkItem(0, "f.dcm", d, "0" * 64)), files)
        before, before_cpu = rate(
            lambda d: process_reference(settings, WorkItem(0, "f.dcm", d, "0" * 64)), files
        )

        data = root / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANCTUM_")}
        env.update(SANCTUM_REQUIRE_2FA="off")
        subprocess.run([sanctum, "init", "--data-dir", str(data)], env=env, check=True, capture_output=True)
        (root / "pw").write_text(PASSWORD)
        create = [sanctum, "admin", "user", "create", "bench@example.org", "--data-dir", str(data)]
        subprocess.run(
            [*create, "--password-file", str(root / "pw")], env=env, check=True, capture_output=True
        )
        one, one_cpu, one_parts = end_to_end(sanctum, data, env, folder, 1, "one-worker")
        full, full_cpu, full_parts = end_to_end(sanctum, data, env, folder, None, "all-cores")

    rows = [
        ("bare deidentify (reference), 1 core", floor, floor_cpu),
        ("bare deidentify_bytes (fast path), 1 core", fast, fast_cpu),
        ("worker before (process_reference), 1 core", before, before_cpu),
        ("ingest worker function, 1 core", worker, worker_cpu),
        ("sanctum ingest end to end, 1 worker", one, one_cpu),
        (f"sanctum ingest end to end, {cores} workers", full, full_cpu),
    ]
    print()
    head = f"{'':43} {'files/s':>8} {'CPU ms/file':>12} {'per core/s':>11} {'÷ref':>6} {'÷fast':>6}"
    print(head)
    for name, per_s, cpu_ms in rows:
        per_core = 1000 / cpu_ms
        print(
            f"{name:43} {per_s:8.1f} {cpu_ms:12.2f} {per_core:11.1f} "
            f"{floor_cpu / cpu_ms:6.2f} {fast_cpu / cpu_ms:6.2f}"
        )
    print()
    print("files/s: wall clock (other tenants disturb it). per core: 1000 / CPU ms per file; the end-to-end")
    print("rows count every CPU second of the server, its worker pool and the client together.")
    print("÷ref, ÷fast: per-core rate as a multiple of the reference and of the fast-path floor.")
    split = (("1 worker", one_parts), (f"{cores} workers", full_parts))
    for label, (client_ms, server_ms, workers_ms) in split:
        print(
            f"end to end ({label}), CPU ms per file: client (SDK) {client_ms:.2f}, server process "
            f"{server_ms:.2f}, worker processes {workers_ms:.2f}"
        )
    for label, base in (("reference deidentify", floor_cpu), ("fast path deidentify_bytes", fast_cpu)):
        ratio = base / one_cpu
        verdict = "met" if ratio >= 0.7 else "MISSED"
        print(f"target: end-to-end (1 worker) ≥ 0.7 × bare {label} per core (CPU): {ratio:.2f} ({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
