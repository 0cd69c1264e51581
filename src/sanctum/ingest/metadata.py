"""The DICOM metadata table: one row per stored instance, queryable with SQL like any table dataset.

Every value comes from the *de-identified* output (pseudonymised patient and UIDs, the shifted study
date), so the table says nothing the stored files do not. The one exception is Manufacturer: the
Basic Profile's safety net removes it from the files as free text, yet it is the vendor's name and
useful for analysis (scanner effects), so it is taken from the original, kept only when it is short
printable text that contains none of the file's own names, IDs or dates (the same byte scan the
de-identifier runs), and otherwise left empty.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

import pyarrow as pa
import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset

from sanctum.deid.scan import scan

#: Column order and types of ``<dataset>-metadata``. ``dataset_version`` and ``path`` say where
#: the instance is stored; the table accumulates over the dataset's versions.
SCHEMA = pa.schema(
    [
        ("dataset_version", pa.int32()),
        ("path", pa.string()),
        ("patient_id", pa.string()),
        ("study_uid", pa.string()),
        ("series_uid", pa.string()),
        ("instance_uid", pa.string()),
        ("sop_class_uid", pa.string()),
        ("modality", pa.string()),
        ("image_rows", pa.int32()),
        ("image_columns", pa.int32()),
        ("frames", pa.int32()),
        ("study_date", pa.date32()),
        ("body_part", pa.string()),
        ("manufacturer", pa.string()),
    ]
)
METADATA_SUFFIX = "-metadata"
_TAGS = [
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "StudyDate",
    "BodyPartExamined",
]
_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC", "AE", "DA", "DT", "CS", "UI"})
_VENDOR_TAGS = frozenset({0x00080070, 0x00081090, 0x00181020})  # Manufacturer, its model, software
_PRINTABLE = re.compile(r"[ -~]{1,64}")


def metadata_name(dataset: str) -> str:
    """``scans`` → ``scans-metadata`` (queried in SQL as ``scans_metadata``)."""
    return dataset + METADATA_SUFFIX


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    text = str(value).strip("\x00 ")
    return text or None


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _date(value: str | None) -> str | None:
    if not value or len(value) < 8:
        return None
    try:
        return dt.datetime.strptime(value[:8], "%Y%m%d").date().isoformat()
    except ValueError:
        return None


def manufacturer(original: Dataset | None) -> str | None:
    """The original Manufacturer if it is safe to show (see the module docstring), else None."""
    if original is None:
        return None
    value = _text(original, "Manufacturer")
    if value is None or not _PRINTABLE.fullmatch(value):
        return None
    return None if scan(value.encode(), _texts(original)) else value


def _texts(ds: Dataset) -> list[tuple[str, str]]:
    """The file's public top-level text values, read raw: converting every element (hundreds of
    private ones in some files) would cost more than the de-identification itself."""
    out = []
    for tag in list(ds.keys()):  # by tag: iterating a Dataset would convert every value
        if tag.is_private or tag in _VENDOR_TAGS:
            continue
        raw = ds.get_item(tag)
        try:
            vr = raw.VR or dictionary_VR(tag)
        except KeyError:
            continue
        if vr in _TEXT_VRS and raw.value not in (None, b"", ""):
            value = raw.value.decode("latin-1") if isinstance(raw.value, bytes) else str(raw.value)
            out.append((str(tag), value))  # the name is not used: only whether any value occurs
    return out


def row(output: bytes, original: Dataset | None) -> dict[str, Any]:
    """The metadata row of one de-identified instance (``dataset_version``/``path`` set later)."""
    ds = pydicom.dcmread(io.BytesIO(output), stop_before_pixels=True, specific_tags=_TAGS)
    return {
        "patient_id": _text(ds, "PatientID"),
        "study_uid": _text(ds, "StudyInstanceUID"),
        "series_uid": _text(ds, "SeriesInstanceUID"),
        "instance_uid": _text(ds, "SOPInstanceUID"),
        "sop_class_uid": _text(ds, "SOPClassUID"),
        "modality": _text(ds, "Modality"),
        "image_rows": _int(ds, "Rows"),
        "image_columns": _int(ds, "Columns"),
        "frames": _int(ds, "NumberOfFrames") or (1 if "Rows" in ds else None),
        "study_date": _date(_text(ds, "StudyDate")),
        "body_part": _text(ds, "BodyPartExamined"),
        "manufacturer": manufacturer(original),
    }


def table(rows: list[dict[str, Any]], previous: pa.Table | None = None) -> pa.Table:
    """The metadata table: ``previous`` (the last version's rows) followed by ``rows``."""
    converted = [
        {**r, "study_date": dt.date.fromisoformat(r["study_date"]) if r.get("study_date") else None}
        for r in rows
    ]
    new = pa.Table.from_pylist(converted, schema=SCHEMA)
    if previous is None or previous.num_rows == 0:
        return new
    return pa.concat_tables([previous, new], promote_options="permissive").select(SCHEMA.names)
