"""Every file pydicom ships as test data goes through ``deidentify`` without an exception escaping.

Why the whole corpus: it holds the awkward encodings an ingest will meet (big endian, deflated,
implicit VR, no file meta, encapsulated pixel data, odd character sets, broken files). Each file is
either de-identified — and then the output reads back with pydicom and its pixel data bytes are
exactly the input's — or rejected/quarantined with a reason. Both entry points are checked: the
reference ``deidentify`` and ``deidentify_bytes``, which takes the raw-bytes fast path where it
applies (``tests/test_deid_dicom_raw.py`` shows the two give the same result).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from sanctum.deid.dicom import deidentify
from sanctum.deid.dicom_raw import deidentify_bytes
from sanctum.deid.profile import Options
from sanctum.deid.pseudonyms import Pseudonymiser

KEY = Pseudonymiser(b"project-one-secret-key-0123456789abcdef")
EVERYTHING = Options(
    retain_uids=True,
    retain_device_identity=True,
    retain_institution_identity=True,
    retain_patient_characteristics=True,
    longitudinal="modified",
    retain_safe_private=True,
    clean_descriptors=True,
    clean_structured_content=True,
    clean_graphics=True,
)
FILES = sorted(f for f in get_testdata_files() if os.path.isfile(f))


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.simplefilter("ignore")


def _read(data: bytes) -> pydicom.Dataset | None:
    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:
        return None


def test_corpus_has_the_awkward_encodings() -> None:
    syntaxes, without_meta = set(), 0
    for path in FILES:
        ds = _read(Path(path).read_bytes())
        if ds is None:
            continue
        ts = getattr(ds.file_meta, "TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
        syntaxes.add(ts)
        without_meta += ts is None
    assert {ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian} <= syntaxes
    assert without_meta > 0


@pytest.mark.parametrize("deid", [deidentify, deidentify_bytes], ids=["reference", "bytes"])
@pytest.mark.parametrize("options", [Options(), EVERYTHING], ids=["basic", "all-options"])
@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_every_file_deidentifies_or_is_rejected(path, options, deid) -> None:
    data = Path(path).read_bytes()
    result = deid(data, KEY, options)
    if result.output is None:
        reasons = [result.rejected] if result.rejected else result.quarantine_reasons
        assert reasons and all(isinstance(r, str) and r for r in reasons)
        return
    out = pydicom.dcmread(io.BytesIO(result.output))
    assert out.PatientIdentityRemoved == "YES"
    assert "PatientName" not in out or not out.PatientName
    if not options.retain_safe_private:
        assert not any(e.tag.is_private for e in out.iterall())
    before = _read(data)
    assert before is not None
    if "PixelData" in before:
        assert out.PixelData == before.PixelData
    original_ts = getattr(getattr(before, "file_meta", None), "TransferSyntaxUID", None)
    assert original_ts is None or out.file_meta.TransferSyntaxUID == original_ts
