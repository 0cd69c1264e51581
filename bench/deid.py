"""DICOM de-identification against the peers and the pydicom floor, in one run, per core.

    .venv/bin/python bench/deid.py                 # 2,000 files (200 patients x 10), all peers
    .venv/bin/python bench/deid.py --files 500     # scale the corpus
    .venv/bin/python bench/deid.py --quick         # 40 files: a smoke run
    .venv/bin/python bench/deid.py --no-peers      # Sanctum and the floor only (no installs)

The corpus is synthetic and deterministic: pydicom's CT_small (even patients) and MR_small (odd
patients), each patient with its own name, ID, birth date, study date, accession number and UIDs,
10 instances per patient in one study. Every tool reads each file from disk and produces its
de-identified copy in memory, one process, one file after another; the copies are written to disk
after the clock stops (writing a file costs more CPU than de-identifying it here, and Orthanc's
figure, counted in the server, never includes it):

- pydicom ``dcmread`` + ``save_as`` unchanged: the floor of any pydicom-based tool;
- Sanctum's reference ``sanctum.deid.dicom.deidentify`` and the raw-bytes ``deidentify_bytes``:
  the full Basic Profile, keyed pseudonyms (same patient → same pseudonym), the byte scan on;
- dicognito, deid (pydicom/deid, default recipe) and dicom-anonymizer (its dataset API), each
  installed by this script into its own virtualenv under ``--peers-dir`` (default
  ``~/.cache/sanctum-bench-peers``, outside the repository; the first run takes a few minutes);
- Orthanc (Debian package ``orthanc``, installed with apt-get when missing and running as root):
  started with a temporary configuration and storage inside a private network namespace
  (bubblewrap ``--unshare-net``: loopback only), the files uploaded first, then
  ``POST /instances/{id}/anonymize`` timed for each; its rate per core is counted from the
  server's own CPU time;
- dcmanon: measured if a ``dcmanon`` binary is on PATH (no Debian package provides one).

Rates are files per CPU-second of the tool's process (per core), which a busy shared machine
disturbs less than wall time; wall-clock rates are printed too. "grouping" says whether each
source patient got exactly one output Patient ID and each source study one Study Instance UID,
distinct from the others. A peer that cannot be installed or started is reported as not measured.
The exit status is 0 whenever Sanctum was measured: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("dicognito", "deid", "dicom-anonymizer")
NAMESPACE = uuid.UUID("5f0c1f36-3f5e-4c53-9d2c-1f0b8e6c2a11")
KEY_HEX = "73616e6374756d2d62656e63682d6b65792d303132333435363738396162636465"
TARGET_ORTHANC, TARGET_INGEST = 1.5, 0.7

RUNNER = r"""
import gc, io, json, logging, os, sys, time, warnings
warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
kind, src, dst = sys.argv[1:4]
names = sorted(n for n in os.listdir(src) if n.endswith(".dcm"))
def encode(ds):
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()
if kind == "pydicom":
    import pydicom
    def one(path):
        return encode(pydicom.dcmread(path))
elif kind.startswith("sanctum"):
    from sanctum.deid.dicom import deidentify
    from sanctum.deid.dicom_raw import deidentify_bytes
    from sanctum.deid.profile import Options
    from sanctum.deid.pseudonyms import Pseudonymiser
    fn = deidentify if kind == "sanctum-reference" else deidentify_bytes
    key, options = Pseudonymiser(bytes.fromhex(os.environ["BENCH_KEY"])), Options()
    def one(path):
        with open(path, "rb") as f:
            result = fn(f.read(), key, options)
        if result.output is None:
            raise RuntimeError(result.rejected or "withheld")
        return result.output
elif kind == "dicognito":
    import pydicom
    from dicognito.anonymizer import Anonymizer
    anonymizer = Anonymizer(seed="sanctum-bench")
    def one(path):
        ds = pydicom.dcmread(path)
        anonymizer.anonymize(ds)
        return encode(ds)
elif kind == "deid":
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers
    recipe = DeidRecipe()
    def one(path):
        return encode(replace_identifiers([path], deid=recipe, save=False)[0])
elif kind == "dicom-anonymizer":
    import pydicom
    from dicomanonymizer import anonymize_dataset
    def one(path):
        ds = pydicom.dcmread(path)
        anonymize_dataset(ds)
        return encode(ds)
one(os.path.join(src, names[0]))
outputs, errors = {}, []
gc.collect()
wall, cpu = time.perf_counter(), time.process_time()
for name in names:
    try:
        outputs[name] = one(os.path.join(src, name))
    except Exception as exc:
        errors.append(type(exc).__name__)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
for name, data in outputs.items():  # after the clock: outputs are written for the grouping check only
    with open(os.path.join(dst, name), "wb") as f:
        f.write(data)
print(json.dumps({"files": len(names), "errors": len(errors), "error": errors[:1], "wall": wall, "cpu": cpu}))
"""


def uid(text: str) -> str:
    return f"2.25.{uuid.uuid5(NAMESPACE, text).int}"


def build_corpus(folder: Path, files: int) -> None:
    """``files`` synthetic instances, 10 per patient, alternating CT and MR patients."""
    samples = [pydicom.dcmread(get_testdata_file(n)) for n in ("CT_small.dcm", "MR_small.dcm")]
    for n in range(files):
        p, i = divmod(n, 10)
        ds = samples[p % 2].copy()
        ds.PatientName, ds.PatientID = f"SYNTHETIC^PATIENT{p:05d}", f"SYN{p:07d}"
        ds.PatientBirthDate = f"19{40 + p % 50:02d}{1 + p % 12:02d}{1 + p % 28:02d}"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = f"2021{1 + p % 12:02d}{1 + p % 28:02d}"
        ds.AccessionNumber, ds.StudyID = f"ACC{p:07d}", f"S{p:05d}"
        ds.InstitutionName, ds.ReferringPhysicianName = "SYNTHETIC HOSPITAL", f"DOCTOR^SYNTH{p % 7}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = uid(f"study-{p}"), uid(f"series-{p}")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid(f"instance-{p}-{i}")
        ds.FrameOfReferenceUID, ds.InstanceNumber = uid(f"frame-{p}"), i + 1
        ds.save_as(folder / f"p{p:05d}_i{i:03d}.dcm", enforce_file_format=True)


def grouping(src: Path, out: Path) -> str:
    """'kept' if every source patient maps to one output Patient ID and study to one Study UID."""
    patients: dict[str, set[str]] = {}
    studies: dict[str, set[str]] = {}
    for path in sorted(src.glob("*.dcm")):
        target = out / path.name
        if not target.exists():
            return "no output"
        ds = pydicom.dcmread(target, stop_before_pixels=True)
        patient = path.name.split("_")[0]
        patients.setdefault(patient, set()).add(str(ds.get("PatientID", "")))
        studies.setdefault(patient, set()).add(str(ds.get("StudyInstanceUID", "")))
    problems = []
    for label, found in (("patients", patients), ("studies", studies)):
        ids = [next(iter(v)) for v in found.values() if len(v) == 1]
        if len(ids) < len(found):
            problems.append(f"{label} split")
        elif len(set(ids)) < len(ids):
            problems.append(f"{label} merged")
    return "kept" if not problems else ", ".join(problems)


def run_tool(python: str, kind: str, src: Path, out: Path, env: dict[str, str] | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [python, "-c", RUNNER, kind, str(src), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_KEY": KEY_HEX, **(env or {})},
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["no output"])[-1][:160])
    return json.loads(lines[-1])


def peer_python(peers_dir: Path, name: str) -> tuple[str, str]:
    """The peer's virtualenv python (created and installed on first use) and its version."""
    venv = peers_dir / name
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"  installing {name} into {venv} (first run only) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", name], check=True, capture_output=True)
    show = subprocess.run(
        [str(python), "-m", "pip", "show", name], capture_output=True, text=True, check=False
    )
    version = next(
        (line.split()[-1] for line in show.stdout.splitlines() if line.startswith("Version:")), "?"
    )
    return str(python), version


# ------------------------------------------------------------------------------------------ Orthanc


def orthanc_binary() -> str | None:
    found = shutil.which("Orthanc") or (("/usr/sbin/Orthanc") if Path("/usr/sbin/Orthanc").exists() else None)
    if found or os.geteuid() != 0:
        return found
    print("  installing Debian package orthanc (apt-get) ...", flush=True)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "orthanc"],
        capture_output=True,
        check=False,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def orthanc_worker(binary: str, src: Path, out: Path, work: Path) -> dict:
    """Inside the private network namespace: start Orthanc, upload, time the anonymizations."""
    work.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = {
        "Name": "SanctumBench",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "index"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SaveJobs": False,
        "DeidentifyLogs": False,
        "HttpCompressionEnabled": False,
    }
    (work / "orthanc.json").write_text(json.dumps(config))
    server = subprocess.Popen(
        [binary, str(work / "orthanc.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(300):
            try:
                conn.request("GET", "/system")
                conn.getresponse().read()
                break
            except OSError:
                conn.close()
                time.sleep(0.1)
        ids = []
        names = sorted(p.name for p in src.glob("*.dcm"))
        for name in names:
            conn.request("POST", "/instances", body=(src / name).read_bytes())
            ids.append(json.loads(conn.getresponse().read())["ID"])
        out.mkdir(parents=True, exist_ok=True)
        conn.request("POST", f"/instances/{ids[0]}/anonymize", body="{}")
        conn.getresponse().read()  # warm-up
        server_cpu, wall = cpu_seconds(server.pid), time.perf_counter()
        outputs = {}
        for name, instance in zip(names, ids, strict=True):
            conn.request("POST", f"/instances/{instance}/anonymize", body="{}")
            response = conn.getresponse()
            outputs[name] = response.read()
            if response.status != 200:
                raise RuntimeError(f"anonymize answered HTTP {response.status}")
        wall = time.perf_counter() - wall
        server_cpu = cpu_seconds(server.pid) - server_cpu
        for name, body in outputs.items():
            (out / name).write_bytes(body)
        conn.request("GET", "/system")
        version = json.loads(conn.getresponse().read()).get("Version", "?")
        return {"files": len(names), "errors": 0, "wall": wall, "cpu": server_cpu, "version": version}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def run_orthanc(src: Path, out: Path, work: Path) -> dict:
    binary = orthanc_binary()
    if binary is None:
        raise RuntimeError("Orthanc is not installed (apt-get install orthanc, as root)")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise RuntimeError("bubblewrap is missing: Orthanc 1.10 cannot bind to loopback by itself")
    args = [sys.executable, __file__, "--orthanc-worker", binary, str(src), str(out), str(work)]
    proc = subprocess.run(
        [bwrap, "--dev-bind", "/", "/", "--unshare-net", "--die-with-parent", "--", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["no output"])[-1][:160])
    return json.loads(lines[-1])


# ------------------------------------------------------------------------------------------ ingest


def ingest_worker_rate(src: Path) -> dict:
    """``sanctum.ingest.pipeline.process`` (detect, checks, de-identify, metadata row) in-process."""
    from sanctum.deid.profile import Options
    from sanctum.ingest.pipeline import WorkItem, WorkSettings, process

    settings = WorkSettings(
        secret=bytes.fromhex(KEY_HEX),
        options=Options(),
        edf_dates="shift",
        policy=None,
        table_dataset=False,
        max_table_bytes=1 << 30,
    )
    items = [
        WorkItem(i, p.name, p.read_bytes(), f"{i:032x}") for i, p in enumerate(sorted(src.glob("*.dcm")))
    ]
    process(settings, items[0])
    wall, cpu = time.perf_counter(), time.process_time()
    outcomes = [process(settings, item).outcome for item in items]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stored = sum(o == "stored" for o in outcomes)
    return {"files": len(items), "errors": len(items) - stored, "wall": wall, "cpu": cpu}


# ------------------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--quick", action="store_true", help="40 files, one round: a smoke run")
    parser.add_argument(
        "--no-peers", action="store_true", help="only Sanctum, the floor and the ingest worker"
    )
    parser.add_argument("--peers-dir", type=Path, default=Path.home() / ".cache" / "sanctum-bench-peers")
    parser.add_argument("--orthanc-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.orthanc_worker:
        binary, src, out, work = args.orthanc_worker
        print(json.dumps(orthanc_worker(binary, Path(src), Path(out), Path(work))))
        return 0
    files, rounds = (40, 1) if args.quick else (args.files, max(1, args.rounds))
    runs: dict[str, list[dict]] = {}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="sanctum-bench-deid-") as tmp:
        base = Path(tmp)
        src = base / "corpus"
        src.mkdir()
        print(f"building {files} files ({(files + 9) // 10} synthetic patients) in {src} ...", flush=True)
        build_corpus(src, files)
        env, python = {"PYTHONPATH": str(ROOT / "src")}, sys.executable
        candidates: list[tuple[str, object]] = [
            ("pydicom read+write unchanged (floor)", lambda o: run_tool(python, "pydicom", src, o, env)),
            ("Sanctum deidentify (reference)", lambda o: run_tool(python, "sanctum-reference", src, o, env)),
            ("Sanctum deidentify_bytes (fast path)", lambda o: run_tool(python, "sanctum-fast", src, o, env)),
        ]
        if not args.no_peers:
            args.peers_dir.mkdir(parents=True, exist_ok=True)
            for peer in PEERS:
                candidates.append((peer, lambda o, p=peer: run_peer(args.peers_dir, p, src, o)))
            orthanc = "Orthanc /instances/{id}/anonymize"
            candidates.append((orthanc, lambda o: run_orthanc(src, o, base / "orthanc")))
            candidates.append(("dcmanon", lambda o: run_dcmanon(src, o)))
        candidates.append(("ingest worker (pipeline.process, reference)", lambda o: ingest_worker_rate(src)))
        for round_number in range(rounds):
            for i, (name, measure) in enumerate(candidates):
                if name in failed:
                    continue
                print(f"round {round_number + 1}/{rounds}: {name} ...", flush=True)
                out = base / f"out{i}"
                try:
                    result = measure(out)  # type: ignore[operator]
                    if not round_number and out.exists():
                        result["grouping"] = "—" if i == 0 else grouping(src, out)
                    runs.setdefault(name, []).append(result)
                except Exception as exc:
                    failed[name] = f"not measured: {type(exc).__name__}: {exc}"
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(str(out) + ".warm", ignore_errors=True)
    return report(runs, failed, files, rounds)


def run_peer(peers_dir: Path, peer: str, src: Path, out: Path) -> dict:
    python, version = peer_python(peers_dir, peer)
    result = run_tool(python, peer, src, out)
    result["label"] = f" {version}"
    return result


def run_dcmanon(src: Path, out: Path) -> dict:
    binary = shutil.which("dcmanon")
    if binary is None:
        raise RuntimeError("no dcmanon binary; no Debian package provides one (apt-cache search dcmanon)")
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in src.glob("*.dcm"))
    start, cpu = time.perf_counter(), os.times()
    for name in names:
        subprocess.run([binary, str(src / name), str(out / name)], check=True, capture_output=True)
    end = os.times()
    children = (end.children_user - cpu.children_user) + (end.children_system - cpu.children_system)
    return {"files": len(names), "errors": 0, "wall": time.perf_counter() - start, "cpu": children}


def report(runs: dict[str, list[dict]], failed: dict[str, str], files: int, rounds: int) -> int:
    print(f"\n{files} files, one process per tool, {rounds} interleaved round(s); files/s per core = files /")
    print(
        "CPU seconds of the tool's process (Orthanc: the server's); median over rounds, range in brackets\n"
    )
    print(f"{'tool':52s} {'per core':>9s} {'range':>13s} {'wall':>7s}  {'errors':>6s}  grouping")
    rates: dict[str, float] = {}
    for name, results in runs.items():
        first = results[0]
        label = name + first.get("label", "")
        if name.startswith("Orthanc"):
            label = f"Orthanc {first.get('version', '')} /instances/{{id}}/anonymize"
        per_core = sorted(r["files"] / r["cpu"] for r in results)
        walls = sorted(r["files"] / r["wall"] for r in results)
        rates[label] = median = per_core[len(per_core) // 2]
        spread = f"[{per_core[0]:.0f}-{per_core[-1]:.0f}]"
        errors = f"{first['errors']}" + (f" {first['error'][0]}" if first.get("error") else "")
        wall = walls[len(walls) // 2]
        print(
            f"{label:52s} {median:9.0f} {spread:>13s} {wall:7.0f}  {errors:>6s}  {first.get('grouping', '')}"
        )
    for name, reason in failed.items():
        print(f"{name:52s} {reason}")
    fast = next((v for k, v in rates.items() if "fast path" in k), None)
    reference = next((v for k, v in rates.items() if "(reference)" in k), None)
    if fast is None or reference is None:
        print("\nSanctum was not measured")
        return 1
    print("\nratios (files/s per core):")
    for name, value in rates.items():
        if "Sanctum" not in name and "ingest" not in name:
            print(
                f"  fast path / {name[:44]:44s} {fast / value:6.2f}   reference / it {reference / value:6.2f}"
            )
    orthanc = next((v for k, v in rates.items() if k.startswith("Orthanc")), None)
    if orthanc is not None:
        met = "met" if fast >= TARGET_ORTHANC * orthanc else "MISSED"
        print(f"target: fast path >= {TARGET_ORTHANC} x Orthanc per core: {fast / orthanc:.2f} x, {met}")
    ingest = next((v for k, v in rates.items() if k.startswith("ingest")), None)
    if ingest is not None:
        print(
            f"ingest worker / bare reference deidentify: {ingest / reference:.2f}; "
            f"/ bare fast path: {ingest / fast:.2f} (target >= {TARGET_INGEST} for end-to-end ingest)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
