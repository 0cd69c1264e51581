"""Synthetic sources for the ingest tests: DICOM, EDF+ and CSV with identifiers planted everywhere.

Every identifying value is a unique marker (``ZEBULON…``, ``MRNZ…``), so a byte search of what the
platform stored proves whether any of them survived. Patients' folders are named after them, as
hospital exports often are, so the tests also prove that no stored path carries a source path.
"""

from __future__ import annotations

import datetime as dt
import io
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pyedflib
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from sanctum.datasets import tables
from sanctum.store import LocalBlobStore

UID_ROOT = "1.2.826.0.1.3680043.8.498."


def patient_markers(p: int) -> dict[str, str]:
    return {
        "PatientName": f"Quux^Zebulon{p}",
        "PatientID": f"MRNZ88442{p}",
        "PatientBirthDate": f"192304{p % 28 + 1:02}",
        "InstitutionName": f"Zebulon Memorial Hospital {p}",
        "ReferringPhysicianName": f"Xanthippe^Drz{p}",
        "AccessionNumber": f"ACCZ9934{p}",
        "OperatorsName": f"Operatorz^Yolanda{p}",
    }


PRIVATE_MARKER = "ZPRIVATE-SECRET-77"


def dicom_bytes(
    p: int, i: int, *, sample: str = "CT_small.dcm", **changes: object
) -> tuple[bytes, list[str]]:
    """Instance ``i`` of patient ``p`` (one study, one series each) and the markers it carries."""
    ds = pydicom.dcmread(get_testdata_file(sample))
    markers = patient_markers(p)
    for keyword, value in markers.items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID = generate_uid(UID_ROOT, entropy_srcs=[f"study{p}"])
    ds.SeriesInstanceUID = generate_uid(UID_ROOT, entropy_srcs=[f"series{p}{sample}"])
    ds.SOPInstanceUID = generate_uid(UID_ROOT, entropy_srcs=[f"sop{p}-{i}-{sample}"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDate = "20210314"
    ds.InstanceNumber = i + 1
    block = ds.private_block(0x0009, "ZEBCORP", create=True)
    block.add_new(0x01, "LO", PRIVATE_MARKER)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    uids = [str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)]
    return out.getvalue(), [*markers.values(), PRIVATE_MARKER, *uids]


EDF_MARKERS = {
    "code": "MRNZ884429",
    "name": "Zebulon_Quux9",
    "technician": "ZTECH9934",
    "note": "ZANNO Quux said",
}


def edf_bytes(folder: Path) -> tuple[bytes, list[str]]:
    """An EDF+ night with markers in the patient and recording fields and in an annotation."""
    path = folder / "night.edf"
    writer = pyedflib.EdfWriter(str(path), 1, file_type=pyedflib.FILETYPE_EDFPLUS)
    writer.setSignalHeaders(
        [
            {
                "label": "EEG C3-M2",
                "dimension": "uV",
                "sample_frequency": 64,
                "physical_max": 500.0,
                "physical_min": -500.0,
                "digital_max": 32767,
                "digital_min": -32768,
            }
        ]
    )
    writer.setPatientCode(EDF_MARKERS["code"])
    writer.setPatientName(EDF_MARKERS["name"])
    writer.setTechnician(EDF_MARKERS["technician"])
    writer.setBirthdate(dt.date(1923, 4, 17))
    writer.setStartdatetime(dt.datetime(2021, 3, 14, 22, 47, 5))
    writer.writeSamples([200 * np.sin(np.arange(10 * 64) / 7)])
    writer.writeAnnotation(1.0, 1, EDF_MARKERS["note"])
    writer.close()
    return path.read_bytes(), [v for k, v in EDF_MARKERS.items() if k != "note"] + ["ZANNO", "17-APR-1923"]


CSV_MARKERS = ["Zebulon Quux", "Yolanda Operatorz", "MRNZ-TABLE-1"]
CSV_TEXT = (
    "patient_id,name,mrn,admitted,hba1c\n"
    "00123,Zebulon Quux,MRNZ-TABLE-1,2021-03-14,6.1\n"
    "00456,Yolanda Operatorz,MRNZ-TABLE-2,2021-04-01,7.4\n"
)
POLICY = {
    "patient_column": "patient_id",
    "columns": {
        "patient_id": {"action": "pseudonymise"},
        "name": {"action": "drop"},
        "mrn": {"action": "pseudonymise"},
        "admitted": {"action": "date_shift"},
        "hba1c": {"action": "keep"},
    },
}


def tar_body(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def plaintexts(runtime, blob_ids_and_keys) -> list[tuple[str, bytes]]:
    """Decrypt stored blobs; Parquet ones are also rendered as text (their pages are compressed)."""
    store: LocalBlobStore = runtime.store
    out = []
    for blob_id, key in blob_ids_and_keys:
        data = b"".join(store.open_range(blob_id, key))
        out.append((blob_id, data))
        if data[:4] == b"PAR1":
            table = tables.from_parquet_bytes(data)
            out.append((blob_id, repr(table.to_pylist()).encode()))
            out.append((blob_id, repr(pq.read_schema(pa.BufferReader(data)).metadata).encode()))
    return out
