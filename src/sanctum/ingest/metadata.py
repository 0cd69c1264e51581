"""The DICOM metadata table: one row per stored instance, queryable with SQL like any table dataset.

Every value comes from the *de-identified* output (pseudonymised patient and UIDs, the shifted study
date), so the table says nothing the stored files do not. The one exception is Manufacturer: the
Basic Profile's safety net removes it from the files as free text, yet it is the vendor's name and
useful for analysis (scanner effects), so it is taken from the original, kept only when it is short
printable text that contains none of the file's own names, IDs or dates (the same byte scan the
de-identifier runs), and otherwise left empty.

Two ways to the same row. ``row`` parses the output with pydicom (and reads Manufacturer from the
parsed original): for files the raw de-identification walk does not handle, and for a released
quarantined file. ``row_seen``, the ingest worker's usual way, parses nothing: the walk
(``dicom_raw.deidentify_seen``) has read every element header of the original and written every
element of the output, so it hands over the output elements of the row's columns (``CAPTURE``)
and the original's top-level elements (``dicom_raw_seen.Seen``). Plain values (one ASCII value, a
2-byte US) are decoded with pydicom's rules (``dicom_raw_text.text_values``, the decoder the walk
trusts for pseudonymising); as soon as one column is not plain, the row goes through pydicom's
converters on a Dataset of the written raw elements, built as ``dcmread`` builds it.
``tests/test_ingest_fast_path.py`` checks both ways give the same row on every pydicom test file.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pydicom
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from sanctum.deid.dicom_raw_parse import Unsupported
from sanctum.deid.dicom_raw_seen import Seen
from sanctum.deid.dicom_raw_text import text_values
from sanctum.deid.scan import MIN_SCAN_LENGTH, scan

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
    return _row(ds, manufacturer(original))


def _row(ds: Dataset, maker: str | None) -> dict[str, Any]:
    """The row's columns from a dataset of the output's elements (a parsed file, or raw elements)."""
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
        "manufacturer": maker,
    }


# --------------------------------------------------------------------------- from the raw walk

_SPECIFIC_CHARACTER_SET, _SOP_CLASS = 0x00080005, 0x00080016
#: Top-level tags whose output elements the walk keeps (the character set too: pydicom reads it
#: whenever it reads specific tags, and it decides how text decodes).
CAPTURE = frozenset({tag_for_keyword(keyword) for keyword in _TAGS} | {_SPECIFIC_CHARACTER_SET})
_TEXT_COLUMNS = {
    "patient_id": 0x00100020,
    "study_uid": 0x0020000D,
    "series_uid": 0x0020000E,
    "instance_uid": 0x00080018,
    "sop_class_uid": _SOP_CLASS,
    "modality": 0x00080060,
    "body_part": 0x00180015,
}
_ROWS, _COLUMNS, _FRAMES, _STUDY_DATE = 0x00280010, 0x00280011, 0x00280008, 0x00080020
#: VRs the plain decoding handles (the row's text columns); any other VR takes pydicom's way.
_PLAIN_VRS = frozenset({"UI", "LO", "SH", "CS", "DA"})
_TEXT_VR_BYTES = frozenset(vr.encode() for vr in _TEXT_VRS)


class _NotPlain(Exception):
    """A value the plain decoding does not reproduce for certain: pydicom's converters decide."""


def row_seen(seen: Seen) -> dict[str, Any]:
    """``metadata.row`` of the walk's output, from what the walk saw."""
    maker = manufacturer_seen(seen)
    try:
        return _plain_row(seen, maker)
    except (_NotPlain, Unsupported):
        return _row(_written(seen), maker)


def _plain_row(seen: Seen, maker: str | None) -> dict[str, Any]:
    charset = seen.written_value(_SPECIFIC_CHARACTER_SET)
    if charset is not None and not charset[1].isascii():
        raise _NotPlain
    row: dict[str, Any] = {name: _plain_text(seen, tag) for name, tag in _TEXT_COLUMNS.items()}
    frames = _plain_is(seen, _FRAMES)
    row.update(
        image_rows=_plain_us(seen, _ROWS),
        image_columns=_plain_us(seen, _COLUMNS),
        frames=frames or (1 if _ROWS in seen.written else None),
        study_date=_date(_plain_text(seen, _STUDY_DATE)),
        manufacturer=maker,
    )
    return row


def _plain_text(seen: Seen, tag: int) -> str | None:
    """``_text`` of a single-valued ASCII value (absent or empty: None)."""
    written = seen.written_value(tag)
    if written is None or not written[1]:
        return None
    vr, raw = seen.top[tag][1], written[1]  # the VR pydicom reads it with, UN resolved
    if vr not in _PLAIN_VRS or not raw.isascii() or b"\\" in raw or b"\x1b" in raw:
        raise _NotPlain
    values = text_values(vr, raw, None)  # ASCII decodes alike in every character set pydicom accepts
    return (values[0].strip("\x00 ") or None) if values else None


def _plain_us(seen: Seen, tag: int) -> int | None:
    written = seen.written_value(tag)
    if written is None or not written[1]:
        return None
    if seen.top[tag][1] != "US" or len(written[1]) != 2:
        raise _NotPlain
    return int.from_bytes(written[1], "little")


def _plain_is(seen: Seen, tag: int) -> int | None:
    written = seen.written_value(tag)
    if written is None:
        return None
    text = written[1].rstrip(b"\x00 ")  # pydicom strips the padding, then reads an int
    if not text:
        return None
    if seen.top[tag][1] != "IS" or not text.lstrip(b" ").isdigit():
        raise _NotPlain
    return int(text)


def _written(seen: Seen) -> Dataset:
    """The output's ``CAPTURE`` elements as a Dataset of raw elements, the way ``dcmread`` builds it
    (header VR, empty values, character set), so each value converts as it would from the file."""
    elements = {}
    for tag in sorted(seen.written):
        vr, value = seen.written_value(tag) or (None, b"")
        raw = value if value else empty_value_for_VR(vr, raw=True)
        elements[Tag(tag)] = RawDataElement(Tag(tag), vr, len(value), raw, 0, seen.implicit, True)
    ds = Dataset(elements)
    encoding: str | list[str] = default_encoding
    if _SPECIFIC_CHARACTER_SET in elements:
        charset = elements[Tag(_SPECIFIC_CHARACTER_SET)]
        encoding = convert_encodings(convert_raw_data_element(charset).value)
    ds.set_original_encoding(seen.implicit, True, encoding)
    return ds


def manufacturer_seen(seen: Seen) -> str | None:
    """``metadata.manufacturer`` from the original's raw top-level elements.

    The check that the vendor name contains none of the file's values is ``scan``, as there, but
    only over the values in which some piece of ``MIN_SCAN_LENGTH`` characters of the name occurs:
    the name is printable ASCII and the values are latin-1 text, so a value can only be found in
    it as an ASCII needle of that length or more, whose first characters are such a piece. Same
    answer, without splitting every value into needles.
    """
    value = seen.manufacturer.strip("\x00 ") or None
    if value is None or not _PRINTABLE.fullmatch(value):
        return None
    pieces = _pieces(value)
    if pieces is None:
        return value  # shorter than any needle
    texts = _texts_seen(seen)
    if not pieces.search(b"\n".join(texts)):
        return value
    candidates = [("", text.decode("latin-1")) for text in texts if pieces.search(text)]
    return None if scan(value.encode(), candidates) else value


@lru_cache(maxsize=1024)
def _pieces(name: str) -> re.Pattern[bytes] | None:
    """A pattern matching any ``MIN_SCAN_LENGTH``-character piece of ``name`` (vendor names repeat)."""
    raw = name.encode()
    found = {raw[i : i + MIN_SCAN_LENGTH] for i in range(len(raw) - MIN_SCAN_LENGTH + 1)}
    return re.compile(b"|".join(re.escape(piece) for piece in sorted(found))) if found else None


def _texts_seen(seen: Seen) -> list[bytes]:
    """``metadata._texts`` from the raw elements: each value as pydicom holds it unconverted (the
    bytes, decoded latin-1 there), VR from the header (explicit VR) or the dictionary (implicit,
    which is the reader's VR for every text VR). The SOP Class UID is the exception: the pydicom
    path had converted it (its completeness check reads it), so there its VR is the resolved one
    and its value the UID's text, which the walk read as its context value."""
    out = []
    buf, implicit = seen.buf, seen.implicit
    for tag, element in seen.top.items():
        if tag & 0x10000 or tag in _VENDOR_TAGS:
            continue
        if tag == _SOP_CLASS:
            if seen.sop_class:
                out.append(seen.sop_class.encode("latin-1"))
            continue
        start, vstart, vend = element[2], element[3], element[4]
        if vend > vstart and (
            element[1] in _TEXT_VRS if implicit else buf[start + 4 : start + 6] in _TEXT_VR_BYTES
        ):
            out.append(buf[vstart:vend])
    return out


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
