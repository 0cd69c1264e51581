"""The demo's data, brought in the way real data is: through the ingest pipeline, in process.

Three ingests into the demo project, each de-identified on the way in like any upload:

- ``imaging``: small synthetic DICOM series made from pydicom's sample files (CT_small.dcm,
  MR_small.dcm, and the 30-frame ultrasound examples_ybr_color.dcm, which the pipeline
  quarantines for review: the demo shows the quarantine review with something in it), one study per
  synthetic patient; plus its ``imaging-metadata`` table.
- ``clinical-visits``: the synthetic clinic table under a column policy (patient pseudonymised,
  age in bands, visit dates shifted per patient, quasi-identifiers and sensitive columns declared
  for the anonymity report). The DICOM patients are patients of this table, so their pseudonyms
  and date shifts agree.
- ``sleep-recordings``: synthetic EDF+ nights from the sleep-staging example (what the demo job
  trains on), when ``pyedflib`` is installed.

Why not the ``_version`` loads ``demo_data`` used to do: they stored raw files, bypassing
de-identification, which is exactly what the demo should not teach. Idempotent: a dataset that
already has a committed version is not ingested again.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from sqlalchemy import select

from sanctum.api.runtime import Runtime
from sanctum.datasets import catalog
from sanctum.db.models import Dataset
from sanctum.errors import NotFound
from sanctum.ingest import oneshot
from sanctum.projects.service import ProjectContext
from sanctum.schemas.ingest import IngestCreate

IMAGING = "imaging"
VISITS = "clinical-visits"
SLEEP = "sleep-recordings"
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root for generated UIDs
#: (sample file, instances per series) for each synthetic patient's study.
SERIES = (("CT_small.dcm", 3), ("MR_small.dcm", 3))
ULTRASOUND = "examples_ybr_color.dcm"
PATIENTS = 3
VISITS_POLICY: dict[str, object] = {
    "patient_column": "patient",
    "columns": {
        "patient": {"action": "pseudonymise"},
        "age": {"action": "generalise", "bins": [18, 30, 40, 50, 60, 70, 80, 90]},
        "sex": {"action": "keep"},
        "site": {"action": "keep"},
        "diagnosis": {"action": "keep"},
        "visit_date": {"action": "date_shift"},
        "systolic_bp": {"action": "keep"},
        "ahi": {"action": "keep"},
    },
    "quasi_identifiers": ["age", "sex", "site"],
    "sensitive": ["diagnosis"],
}


def dicom_series(patients: int = PATIENTS) -> dict[str, bytes]:
    """Synthetic studies: each patient gets a CT and an MR series from pydicom's samples, with a
    synthetic name, ID (a patient of the clinic table) and dates; the first also an ultrasound."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    files: dict[str, bytes] = {}
    for p in range(patients):
        patient_id = f"P{p + 1:05d}"
        study = generate_uid(UID_ROOT, entropy_srcs=["sanctum-demo-study", patient_id])
        samples = [*SERIES, (ULTRASOUND, 1)] if p == 0 else list(SERIES)
        for sample, count in samples:
            series = generate_uid(UID_ROOT, entropy_srcs=["sanctum-demo-series", patient_id, sample])
            for i in range(count):
                ds = pydicom.dcmread(get_testdata_file(sample))
                ds.PatientName = f"Demo^Patient{p + 1:02d}"
                ds.PatientID = patient_id
                ds.PatientBirthDate = f"19{50 + p * 7}0{p + 1}15"
                ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
                ds.SOPInstanceUID = generate_uid(UID_ROOT, entropy_srcs=[str(series), str(i)])
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                ds.StudyDate = ds.SeriesDate = ds.ContentDate = f"2025{p + 3:02d}1{i}"
                ds.InstanceNumber = i + 1
                out = io.BytesIO()
                ds.save_as(out, enforce_file_format=True)
                # folders named after the patient, as hospital exports often are: never stored
                files[f"Demo Patient{p + 1:02d}/{sample.split('_')[0]}/{i + 1:03d}.dcm"] = out.getvalue()
    return files


def sleep_recordings(folder: Path) -> dict[str, bytes] | None:
    """The sleep-staging example's synthetic EDF+ nights, or None without pyedflib."""
    try:
        from sanctum.demo_jobs import EXAMPLE, _generator

        paths = _generator(EXAMPLE).write_recordings(folder, n=4)
    except (ImportError, FileNotFoundError):
        return None
    return {p.name: _with_patient(p.read_bytes(), i) for i, p in enumerate(paths)}


def _with_patient(edf: bytes, i: int) -> bytes:
    """Give a synthetic night an EDF+ patient field (code, sex, birthdate, name: all synthetic),
    as a real recording has: the pipeline pseudonymises that code and refuses a file without one."""
    field = f"P{i + 1:05d} X 15-MAR-1961 Demo_Sleeper{i + 1:02d}".ljust(80).encode("ascii")
    return edf[:8] + field + edf[88:]


def _has_version(runtime: Runtime, ctx: ProjectContext, name: str) -> bool:
    with runtime.db.session(write=False) as session:
        try:
            ref = catalog.resolve(session, ctx, name)
        except NotFound:
            return False
        return bool(catalog.versions(session, ref))


def ingest(runtime: Runtime, ctx: ProjectContext, body: IngestCreate, files: dict[str, bytes]) -> int:
    """One ingest session in process (start, one batch, finish); returns the session number."""
    return oneshot.run(runtime, ctx, body, sorted(files.items()))


def load(runtime: Runtime, ctx: ProjectContext) -> dict[str, int]:
    """Ingest whatever of the demo data the project does not hold yet; returns dataset → ingest."""
    from sanctum.demo_data import clinical_visits_csv

    done: dict[str, int] = {}
    if not _has_version(runtime, ctx, VISITS):
        body = IngestCreate(dataset=VISITS, kind="table", policy=VISITS_POLICY)
        done[VISITS] = ingest(runtime, ctx, body, {"clinical-visits.csv": clinical_visits_csv()})
        _describe(runtime, ctx, VISITS, "Synthetic clinic visits (de-identified by column policy).")
    if not _has_version(runtime, ctx, IMAGING):
        done[IMAGING] = ingest(runtime, ctx, IngestCreate(dataset=IMAGING), dicom_series())
        _describe(
            runtime, ctx, IMAGING, "Synthetic CT and MR studies from pydicom sample files (de-identified)."
        )
    if not _has_version(runtime, ctx, SLEEP):
        with tempfile.TemporaryDirectory(prefix="sanctum-demo-sleep-") as tmp:
            recordings = sleep_recordings(Path(tmp))
        if recordings:
            done[SLEEP] = ingest(runtime, ctx, IngestCreate(dataset=SLEEP), recordings)
            _describe(runtime, ctx, SLEEP, "Synthetic EDF+ sleep recordings (de-identified).")
    return done


def _describe(runtime: Runtime, ctx: ProjectContext, name: str, text: str) -> None:
    with runtime.db.session() as session:
        dataset = session.scalar(
            select(Dataset).where(Dataset.project_id == ctx.project.id, Dataset.name == name)
        )
        if dataset is not None and not dataset.description:
            dataset.description = text
