"""The example jobs in examples/: run directly on stand-in folders, and end to end in the sandbox."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pydicom.data
import pytest

from conftest import missing
from jobs_helpers import JobWorld, make_job_world
from sanctum.demo_jobs import DEMO_DATASET, run_demo_job
from sanctum.jobs.runner import JobRunner

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SLEEP = EXAMPLES / "sleep-staging"
IMAGING = EXAMPLES / "imaging-stats"


def _make_synthetic() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_synthetic", SLEEP / "make_synthetic.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(script: Path, data: Path, output: Path, **params: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **{f"SANCTUM_PARAM_{k.upper()}": v for k, v in params.items()}}
    return subprocess.run(
        [sys.executable, script.name, "--data", str(data), "--output", str(output)],
        cwd=script.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ direct runs


def test_synthetic_recordings_are_deterministic(tmp_path):
    make = _make_synthetic()
    first = make.write_recordings(tmp_path / "a", n=2, minutes=2, seed=3)
    again = make.write_recordings(tmp_path / "b", n=2, minutes=2, seed=3)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert (
        first[0].read_bytes() != make.write_recordings(tmp_path / "c", n=1, minutes=2, seed=4)[0].read_bytes()
    )


def test_sleep_staging_trains_and_writes_metrics_and_stages(tmp_path):
    _make_synthetic().write_recordings(tmp_path / "data" / "nights", n=4, minutes=10)
    done = _run(SLEEP / "train.py", tmp_path / "data", tmp_path / "out", dataset="nights")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "out" / "report.json").read_text())
    scores = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert scores == {"accuracy": metrics["accuracy"], "epochs_train": 60, "epochs_test": 20}
    assert metrics["recordings"]["test"] == ["synthetic-04.edf"] and len(metrics["recordings"]["train"]) == 3
    assert metrics["epochs"] == {"train": 60, "test": 20}
    assert sum(metrics["counts"]["test"].values()) == 20 and metrics["accuracy"] >= 0.8
    stages = _rows(tmp_path / "out" / "stages.csv")
    assert len(stages) == 80 and {r["split"] for r in stages} == {"train", "test"}
    assert stages[0] == {"recording": "synthetic-01.edf", "epoch": "0", "predicted": "W", "annotated": "W",
                         "split": "train"}  # fmt: skip


def test_sleep_staging_needs_two_annotated_recordings(tmp_path):
    _make_synthetic().write_recordings(tmp_path / "data" / "sleep", n=1, minutes=2)
    done = _run(SLEEP / "train.py", tmp_path / "data", tmp_path / "out")
    assert done.returncode != 0 and "at least 2 recordings" in done.stderr


def test_imaging_stats_summarises_series_and_explains_blanks(tmp_path):
    folder = tmp_path / "data" / "imaging" / "study"
    folder.mkdir(parents=True)
    for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"):
        source = pydicom.data.get_testdata_file(name)
        if source is None:
            missing(f"pydicom test file {name}")
        shutil.copy(source, folder / name.replace(".dcm", ""))  # names need not end in .dcm
    (folder / "notes.txt").write_text("not DICOM")
    done = _run(IMAGING / "stats.py", tmp_path / "data", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "3 series, 3 instances; 1 files were not DICOM" in done.stdout
    rows = {r["modality"]: r for r in _rows(tmp_path / "out" / "series.csv")}
    ct, mr = rows["CT"], rows["MR"]
    assert (ct["instances"], ct["rows"], ct["cols"]) == ("1", "128", "128")
    assert float(ct["min"]) < -500 < float(ct["mean"]) < float(ct["max"])  # Hounsfield units
    assert float(mr["std"]) > 0 and mr["pixel_note"] == ""
    nm = rows["NM"]  # JPEG 2000 without a decoder installed: blank, with the reason
    if nm["mean"] == "":
        assert nm["pixel_note"].startswith("not decodable")
    else:
        assert float(nm["max"]) >= float(nm["min"])


# ------------------------------------------------------------------ through the API and the sandbox


@pytest.fixture
def runner(runtime):
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap) is not installed")
    if runtime.jobs is not None:  # an app's lifespan already started one: a test must not race it
        runtime.jobs.stop()
    runtime.jobs = JobRunner(runtime)  # present but not started: the test drives run_one()
    return runtime.jobs


@pytest.fixture
def jw(runner, client, world, people, tmp_path) -> JobWorld:
    return make_job_world(client, world, people, tmp_path)


def _upload_sleep(jw: JobWorld, tmp_path: Path, dataset: str = "sleep") -> None:
    owner = jw.sdk["owner"]
    owner.create_dataset("alpha", dataset)
    version = owner.create_version("alpha", dataset).number
    for path in _make_synthetic().write_recordings(tmp_path / "edf", n=4, minutes=10):
        owner.upload_file("alpha", dataset, version, path.name, path)
    owner.commit_version("alpha", dataset, version)


@pytest.mark.timeout(180)
def test_sleep_staging_runs_as_a_signed_job_in_the_sandbox(jw, runner, tmp_path):
    _upload_sleep(jw, tmp_path)
    scientist = jw.sdk["scientist"]
    job = scientist.submit_job("alpha", SLEEP, key=jw.keys["scientist"], entrypoint="python train.py",
                               inputs=["sleep"])  # fmt: skip
    assert runner.run_one()
    done = scientist.get_job("alpha", job.id)
    logs = scientist.job_logs("alpha", job.id)
    assert done.state == "succeeded", f"{done.reason}\n{logs.stderr}"
    assert "test accuracy" in logs.stdout
    assert done.output is not None
    files = {f.path for f in jw.sdk["owner"].list_files("alpha", done.output.dataset, done.output.version)}
    assert files == {"metrics.json", "report.json", "stages.csv"}
    assert done.metrics is not None and done.metrics["epochs_test"] == 20  # the job's own scores
    target = tmp_path / "report.json"
    jw.sdk["owner"].download_file("alpha", done.output.dataset, done.output.version, "report.json", target)
    assert json.loads(target.read_text())["epochs"]["test"] == 20


@pytest.mark.timeout(180)
def test_the_demo_job_uploads_recordings_once_and_submits_the_example(jw, runner):
    owner, scientist = jw.sdk["owner"], jw.sdk["scientist"]
    first = run_demo_job(owner, scientist, "alpha", jw.keys["scientist"])
    second = run_demo_job(owner, scientist, "alpha", jw.keys["scientist"])
    assert (first, second) == (1, 2)
    versions = owner.list_versions("alpha", DEMO_DATASET)
    assert [v.number for v in versions] == [1] and versions[0].file_count == 4
    job = scientist.get_job("alpha", first)
    assert job.manifest["entrypoint"] == ["python", "train.py"]
    assert [(i.dataset, i.version) for i in job.inputs] == [(DEMO_DATASET, 1)]
    assert runner.run_one()
    assert scientist.get_job("alpha", first).state == "succeeded"
