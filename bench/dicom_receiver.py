"""DICOM receiver benchmark: dcmtk's ``storescu`` sending one series to ``sanctum dicom listen``,
against bare receivers of the same files in the same run.

    .venv/bin/python bench/dicom_receiver.py [--instances 200] [--associations 1]

The corpus is synthetic (pydicom's CT_small and MR_small, one patient, one study, ``--instances``
files). Each row sends all of it with ``storescu`` (``--associations`` senders at once, the files
split between them) and times from the first connection until every sender released:

1. ``storescp`` (dcmtk): receives and writes each file to disk. The floor of a C-STORE receiver;
2. a bare pynetdicom Storage SCP in a process of its own, writing ``event.encoded_dataset()`` to
   disk: the floor of any pynetdicom-based receiver (the protocol in Python);
3. ``sanctum dicom listen`` (SQLite catalog, ``SANCTUM_INGEST_WORKERS=1``): each instance is
   de-identified, encrypted, stored and recorded before its C-STORE response, and the release
   commits the version and writes the metadata table;
4. for reference, ``pipeline.process`` (detection, checks, de-identification, metadata row) on the
   same files in this process, one core: the de-identification work alone.

Read the ratios: row 3 / row 2 is what receiving through Sanctum costs over the protocol itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

PASSWORD = "bench receiver passphrase 2026"
AE = "BENCHSCU"

BARE_SCP = """
import sys
from pathlib import Path
from pynetdicom import AE, AllStoragePresentationContexts, evt
folder, port = Path(sys.argv[1]), int(sys.argv[2])
count = 0
def store(event):
    global count
    count += 1
    (folder / f"{count:06}.dcm").write_bytes(event.encoded_dataset())
    return 0x0000
ae = AE(ae_title="SANCTUM")
ae.supported_contexts = AllStoragePresentationContexts
print("ready", flush=True)
ae.start_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_C_STORE, store)])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def corpus(folder: Path, instances: int) -> list[Path]:
    samples = [pydicom.dcmread(get_testdata_file(n)) for n in ("CT_small.dcm", "MR_small.dcm")]
    study = generate_uid(entropy_srcs=["bench-receiver-study"])
    paths = []
    for i in range(instances):
        ds = samples[i % 2].copy()
        ds.PatientName, ds.PatientID = "Bench^Receiver", "BENCHRCV01"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[f"bench-receiver-series-{i % 2}"])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[f"bench-receiver-{i}"])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"IM{i:05}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def wait_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the receiver exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the receiver did not start listening")


def send(port: int, files: list[Path], associations: int) -> float:
    """Seconds from the first connection until every sender released; every store must succeed."""
    groups = [files[i::associations] for i in range(associations)]
    start = time.perf_counter()
    senders = [
        subprocess.Popen(
            ["storescu", "-aet", AE, "-aec", "SANCTUM", "127.0.0.1", str(port), *map(str, group)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for group in groups
    ]
    outputs = [s.communicate(timeout=3600)[0] for s in senders]
    seconds = time.perf_counter() - start
    for sender, output in zip(senders, outputs, strict=True):
        if sender.returncode != 0 or "E:" in output:
            raise RuntimeError(f"storescu failed: {output[-500:]}")
    return seconds


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SANCTUM_")}


def row_storescp(tmp: Path, files: list[Path], associations: int) -> float:
    out = tmp / "storescp-out"
    out.mkdir()
    port = free_port()
    process = subprocess.Popen(
        ["storescp", "-aet", "SANCTUM", "-od", str(out), str(port)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, process)
        return send(port, files, associations)
    finally:
        stop(process)


def row_pynetdicom(tmp: Path, files: list[Path], associations: int) -> float:
    out = tmp / "pynetdicom-out"
    out.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", BARE_SCP, str(out), str(port)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, process)
        return send(port, files, associations)
    finally:
        stop(process)


def setup_sanctum(data: Path) -> None:
    """An instance with one owner, project ``bench`` and a route for the sender (offline)."""
    from sanctum.access.policy import Principal
    from sanctum.accounts.users import create_user
    from sanctum.api.runtime import Runtime
    from sanctum.audit import AuditContext
    from sanctum.cli.instance import initialise
    from sanctum.config import load_settings
    from sanctum.dicom import routes
    from sanctum.projects import service as projects
    from sanctum.schemas.dicom import DicomRouteSet

    settings = load_settings(data)
    initialise(settings)
    runtime = Runtime.start(settings)
    try:
        with runtime.db.session() as db:
            user = create_user(db, AuditContext(), "owner@bench.example", PASSWORD)
            principal = Principal(
                user_id=user.id,
                email=user.email,
                is_admin=False,
                can_create_projects=True,
                token_id=0,
                token_kind="login",
            )
            ctx = projects.create(db, principal, name="bench")
            routes.set_route(db, ctx, AE, DicomRouteSet(dataset="scans"))
    finally:
        runtime.close()


def row_sanctum(tmp: Path, files: list[Path], associations: int) -> tuple[float, dict[str, int]]:
    from sqlalchemy import select

    from sanctum.api.runtime import Runtime
    from sanctum.config import load_settings
    from sanctum.ingest.models import IngestSession

    data = tmp / "sanctum-data"
    setup_sanctum(data)
    port = free_port()
    script = Path(sys.executable).parent / "sanctum"
    process = subprocess.Popen(
        [str(script), "dicom", "listen", "--data-dir", str(data), "--port", str(port)],
        env={**env(), "SANCTUM_INGEST_WORKERS": "1"},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, process)
        # warm the worker process up (spawned on the first instance), outside the measurement
        send(port, files[:1], 1)
        seconds = send(port, files[1:], associations)
    finally:
        stop(process)
    runtime = Runtime.start(load_settings(data))
    try:
        with runtime.db.session(write=False) as db:
            counts: dict[str, int] = {}
            for ingest in db.scalars(select(IngestSession)):
                for key in ("stored", "error", "quarantined"):
                    counts[key] = counts.get(key, 0) + ingest.counts.get(key, 0)
    finally:
        runtime.close()
    return seconds, counts


def row_pipeline(files: list[Path]) -> float:
    from sanctum.deid.profile import Options
    from sanctum.ingest.pipeline import WorkItem, WorkSettings, process

    settings = WorkSettings(
        secret=b"k" * 32,
        options=Options(longitudinal="modified"),
        edf_dates="shift",
        policy=None,
        table_dataset=False,
        max_table_bytes=1 << 30,
    )
    blobs = [p.read_bytes() for p in files]
    start = time.perf_counter()
    for i, data in enumerate(blobs):
        result = process(settings, WorkItem(i, f"{i}.dcm", data, f"{i:032}"))
        assert result.outcome == "stored", result.reasons
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--associations", type=int, default=1)
    args = parser.parse_args()
    for tool in ("storescu", "storescp"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install dcmtk")
    with tempfile.TemporaryDirectory(prefix="sanctum-bench-rcv-") as name:
        tmp = Path(name)
        corpus_dir = tmp / "corpus"
        corpus_dir.mkdir()
        files = corpus(corpus_dir, args.instances)
        n = len(files)
        print(
            f"{n} instances ({sum(p.stat().st_size for p in files) / 1e6:.1f} MB), "
            f"{args.associations} association(s), {os.cpu_count()} cores\n"
        )
        floor = row_storescp(tmp, files, args.associations)
        bare = row_pynetdicom(tmp, files, args.associations)
        sanctum, counts = row_sanctum(tmp, files, args.associations)
        deid = row_pipeline(files)
        rows = [
            ("storescp (dcmtk), write to disk", n / floor),
            ("pynetdicom SCP, write to disk", n / bare),
            ("sanctum dicom listen (1 worker)", (n - 1) / sanctum),
            ("pipeline.process only, 1 core", n / deid),
        ]
        width = max(len(r[0]) for r in rows)
        for label, per_second in rows:
            print(f"{label:<{width}}  {per_second:8.1f} instances/s  {1000 / per_second:7.1f} ms each")
        print(
            f"\nsanctum / pynetdicom floor: {rows[2][1] / rows[1][1]:.2f}   "
            f"sanctum / de-identification alone: {rows[2][1] / rows[3][1]:.2f}"
        )
        print(f"sanctum outcomes: {counts} (expected {n} stored)")
        if counts.get("stored") != n:
            sys.exit("not every instance was stored: the figures above do not count")


if __name__ == "__main__":
    main()
