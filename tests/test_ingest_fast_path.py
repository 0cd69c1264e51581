"""The ingest worker's single raw parse gives the outcome the pydicom-parsing worker gave, file for file.

``pipeline.process`` now de-identifies DICOM with one raw walk (``dicom_raw.deidentify_seen``) and
takes its completeness check and metadata row from what that walk saw; ``pipeline.process_reference``
is the worker as it was (``dicom_problem`` parses the original with pydicom, ``deidentify_bytes``
de-identifies, ``metadata.row`` parses the output), kept as the fallback and as the yardstick here.
"Same" means every field of the ``WorkResult``: kind, outcome, the reasons word for word, the output
bytes, the stored path, the action counts and the metadata row.

Checked on every pydicom test and character-set file, whole and cut at every top-level element
boundary (where the walk reads a shorter file whole and the checks on what it saw must decide) and
at offsets inside elements, under two option sets; on hand-made files for the corners of the old
check (a file ending in an empty header) and of the row (Manufacturer, odd values); and a guard
that the everyday files really go through without any pydicom parse. Pure functions, no database.
"""

from __future__ import annotations

import io
import os
import random
import struct
import warnings
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file, get_testdata_files
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from sanctum.deid.dicom_raw import Unsupported, deidentify_seen
from sanctum.deid.dicom_raw_parse import Reader, read_file_meta, transfer_syntax
from sanctum.deid.profile import Options
from sanctum.deid.pseudonyms import Pseudonymiser
from sanctum.ingest import metadata, pipeline
from sanctum.ingest.detect import Kind, detect
from sanctum.ingest.pipeline import WorkItem, WorkResult, WorkSettings, process, process_reference
from test_deid_dicom_privacy import OPTION_SETS

SECRET = b"fast-path-secret-0123456789abcdef"
MODIFIED = Options(longitudinal="modified")
CORPUS = sorted(f for f in [*get_testdata_files(), *get_charset_files()] if os.path.isfile(f))
EVERYDAY = ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm", "test-SR.dcm")


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.simplefilter("ignore")


def settings(options: Options = MODIFIED) -> WorkSettings:
    return WorkSettings(SECRET, options, "shift", None, False, 1 << 30)


def fields(result: WorkResult) -> tuple[object, ...]:
    return (
        result.kind,
        result.outcome,
        result.reasons,
        result.output,
        result.stored_path,
        result.actions,
        result.metadata,
    )


def route(data: bytes, options: Options) -> str:
    """Which way the new worker went: the raw walk alone, or a fallback to the pydicom path."""
    if detect(data) is not Kind.DICOM:
        return "not DICOM"
    try:
        _, seen = deidentify_seen(data, Pseudonymiser(SECRET), options, capture=metadata.CAPTURE)
    except Unsupported:
        return "unsupported"
    return "malformed" if seen is None else "raw"


def compare(data: bytes, options: Options = MODIFIED, name: str = "") -> WorkResult:
    """Both workers on one file: every field equal, or the test fails naming the field."""
    item = WorkItem(0, "f.dcm", data, "c" * 64)
    new, old = process(settings(options), item), process_reference(settings(options), item)
    names = ("kind", "outcome", "reasons", "output", "stored_path", "actions", "metadata")
    differ = [n for n, a, b in zip(names, fields(new), fields(old), strict=True) if a != b]
    assert not differ, (name, len(data), differ, new.reasons, old.reasons)
    return new


def boundaries(data: bytes) -> list[int]:
    """Where each top-level element of a Part 10 file ends (private ones included), if it parses."""
    try:
        start, meta = read_file_meta(data)
        uid = data[meta[0x00020010][1] : meta[0x00020010][2]].decode("ascii").rstrip("\x00 ")
        implicit, _ = transfer_syntax(uid)
        elements = Reader(data, implicit).dataset(start, len(data))[0]
    except Exception:
        return []
    return [element[5] for element in elements][:-1]


def cuts(data: bytes, name: str) -> list[int]:
    """Element boundaries (at most 60, spread over the file) and offsets inside elements."""
    ends = boundaries(data)
    if len(ends) > 60:
        ends = ends[:20] + ends[-40:]  # the head (file meta, identifiers) and the tail (pixel data)
    size, rng = len(data), random.Random(name)
    inside = {size - 1, size - 2, size - 7, size - 11, size // 2, size // 3, 150, 300}
    inside |= {rng.randrange(1, size) for _ in range(4)}
    return sorted(c for c in {*ends, *inside} if 0 < c < size)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("option_set", ["modified", "everything"])
def test_same_outcome_on_every_pydicom_file_and_its_cuts(option_set: str) -> None:
    options = MODIFIED if option_set == "modified" else OPTION_SETS["everything"]
    routes: Counter[tuple[str, str, str]] = Counter()
    for path in CORPUS:
        data = Path(path).read_bytes()
        name = os.path.basename(path)
        whole = compare(data, options, name)
        routes[("whole", route(data, options), whole.outcome)] += 1
        ends = set(boundaries(data))
        for cut in cuts(data, name):
            result = compare(data[:cut], options, f"{name}[:{cut}]")
            routes[("cut", route(data[:cut], options), result.outcome)] += 1
            # only a cut between two whole elements can be stored (nothing shows it), never one inside
            assert result.outcome != "stored" or not ends or cut in ends, (name, cut)
    # The comparison means something only if the raw walk decided most files itself, stored some,
    # and judged cut files whole by itself (the checks on what it saw, not a fallback).
    assert sum(n for (kind, way, _), n in routes.items() if kind == "whole" and way == "raw") >= 140
    assert routes[("whole", "raw", "stored")] >= 30
    assert routes[("cut", "raw", "stored")] >= 100  # cut after a whole element past the pixel data
    assert routes[("cut", "raw", "error")] >= 1000  # e.g. "an image without pixel data"
    assert routes[("cut", "malformed", "error")] >= 400


def test_cut_files_get_the_same_reasons_from_what_the_walk_saw() -> None:
    """A file cut where the walk reads it whole: the reasons come from the raw checks, as before."""
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    ends = boundaries(data)
    before_pixels = ends[-2]  # everything up to the element before Pixel Data
    assert route(data[:before_pixels], MODIFIED) == "raw"
    result = compare(data[:before_pixels])
    assert result.outcome == "error"
    assert result.reasons == ["an image without pixel data: the file is probably truncated"]
    assert result.output is None and result.metadata is None
    inside = compare(data[: before_pixels + 5])  # inside the Pixel Data header
    assert inside.outcome == "error" and inside.reasons[0].startswith("truncated")


# ------------------------------------------------------------------------ hand-made corners


def _encode(ds: Dataset, implicit: bool = False) -> bytes:
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _sample(name: str) -> Dataset:
    return pydicom.dcmread(get_testdata_file(name))


def _with(name: str, *elements: tuple[int, str, object], implicit: bool = False) -> bytes:
    """A sample with ``elements`` set (and without its trailing padding, so they can come last)."""
    ds = _sample(name)
    ds.pop(0xFFFCFFFC, None)
    for tag, vr, value in elements:
        ds[tag] = DataElement(tag, vr, value)
    return _encode(ds, implicit)


def _empty_undefined_sequence(name: str, tag: int) -> bytes:
    ds = _sample(name)
    ds.pop(0xFFFCFFFC, None)
    ds[tag] = DataElement(tag, "SQ", Sequence([]))
    ds[tag].is_undefined_length = True
    return _encode(ds)


def _rows_as_un() -> bytes:
    """MR_small with Rows written as explicit UN (a 12-byte header), which pydicom reads as US."""
    data = _encode(_sample("MR_small.dcm"))
    header = struct.pack("<HH2sH", 0x0028, 0x0010, b"US", 2)
    at = data.index(header, 132)
    return data[:at] + struct.pack("<HH2sHL", 0x0028, 0x0010, b"UN", 0, 2) + data[at + 8 :]


def corners() -> dict[str, bytes]:
    """Files at the edges of the old completeness check and of the metadata row."""
    creator = (0x7FE10010, "LO", "SANCTUM CORNER")
    return {
        # the old check flags a whole file ending in an empty 8-byte header whose value pydicom holds
        # as None (here after dropped private elements, after public ones, in implicit VR)
        "private empty US last": _with("CT_small.dcm", creator, (0x7FE11001, "US", None)),
        "private empty OB last": _with("CT_small.dcm", creator, (0x7FE11001, "OB", None)),
        "private empty LO last": _with("CT_small.dcm", creator, (0x7FE11001, "LO", "")),
        "two private empty US": _with(
            "CT_small.dcm", creator, (0x7FE11001, "US", None), (0x7FE11002, "US", None)
        ),
        "public empty US last": _with("test-SR.dcm", (0x00540081, "US", None)),
        "public empty IS last": _with("test-SR.dcm", (0x00540081, "IS", None)),
        "public empty CS last": _with("test-SR.dcm", (0x00540081, "CS", "")),
        "implicit empty text last": _with("MR_small.dcm", (0xFFFCFFFC, "OB", None), implicit=True),
        "implicit private empty last": _with("MR_small.dcm", creator, (0x7FE11001, "LO", ""), implicit=True),
        "empty undefined sequence last": _empty_undefined_sequence("test-SR.dcm", 0xFFFAFFFA),
        # the metadata row and Manufacturer
        "maker holds the patient name": _with("CT_small.dcm", (0x00080070, "LO", "CompressedSamples ACME")),
        "maker holds another value": _with("CT_small.dcm", (0x00080070, "LO", "HELICAL MODE INC")),
        "maker with pattern characters": _with("CT_small.dcm", (0x00080070, "LO", "A.B*C (x)+[y]|z?")),
        "maker too long": _with("CT_small.dcm", (0x00080070, "LO", "M" * 66)),
        "maker short": _with("CT_small.dcm", (0x00080070, "LO", "GE")),
        "maker padded": _with("CT_small.dcm", (0x00080070, "LO", "  SIEMENS ")),
        "maker empty": _with("CT_small.dcm", (0x00080070, "LO", "")),
        "maker multi-valued": _with("CT_small.dcm", (0x00080070, "LO", ["GE", "SIEMENS"])),
        "maker not ASCII": _with(
            "CT_small.dcm", (0x00080005, "CS", "ISO_IR 100"), (0x00080070, "LO", "Müller Medizintechnik")
        ),
        "frames padded": _with("MR_small.dcm", (0x00280008, "IS", " 3")),
        "frames zero": _with("MR_small.dcm", (0x00280008, "IS", "0")),
        "frames multi-valued": _with("MR_small.dcm", (0x00280008, "IS", ["2", "3"])),
        "modality multi-valued": _with("MR_small.dcm", (0x00080060, "CS", ["MR", "CT"])),
        "body part in UTF-8": _with(
            "MR_small.dcm", (0x00080005, "CS", "ISO_IR 192"), (0x00180015, "CS", "KNEE")
        ),
        "study date short": _with("MR_small.dcm", (0x00080020, "DA", "2021")),
        "rows as UN": _rows_as_un(),
        "columns empty": _with("MR_small.dcm", (0x00280011, "US", None)),
        "no patient id": _with("MR_small.dcm", (0x00100020, "LO", "")),
        "implicit everyday": _encode(_sample("CT_small.dcm"), implicit=True),
    }


@pytest.mark.timeout(120)
def test_same_outcome_on_hand_made_corners() -> None:
    files = corners()
    outcomes = {name: compare(data, MODIFIED, name) for name, data in files.items()}
    for name, data in files.items():
        compare(data, OPTION_SETS["everything"], name)
    raw = {name for name, data in files.items() if route(data, MODIFIED) == "raw"}
    assert raw >= set(files) - {"maker multi-valued", "modality multi-valued", "frames multi-valued"}
    cut = "truncated: the file ends inside the header of an attribute"
    flagged = {name for name, result in outcomes.items() if result.reasons == [cut]}
    assert flagged == {
        "private empty US last",
        "public empty US last",
        "public empty IS last",
        "implicit empty text last",
        "implicit private empty last",
    }
    makers = {name: r.metadata["manufacturer"] for name, r in outcomes.items() if name.startswith("maker")}
    assert makers == {
        "maker holds the patient name": None,
        "maker holds another value": None,
        "maker with pattern characters": "A.B*C (x)+[y]|z?",
        "maker too long": None,
        "maker short": "GE",
        "maker padded": "SIEMENS",
        "maker empty": None,
        "maker multi-valued": "['GE', 'SIEMENS']",  # pydicom's list form, as the worker always gave
        "maker not ASCII": None,
    }
    assert outcomes["frames padded"].metadata["frames"] == 3
    assert outcomes["frames zero"].metadata["frames"] == 1  # 0 → 1 for an image, as before
    assert outcomes["rows as UN"].metadata["image_rows"] == 64
    assert outcomes["columns empty"].metadata["image_columns"] is None


def test_a_row_that_is_not_plain_goes_through_pydicom_converters() -> None:
    """Multi-valued text is rendered by pydicom (its list form), whichever way the row is built."""
    data = _with("MR_small.dcm", (0x00180015, "CS", ["KNEE", "LEG"]))
    assert route(data, MODIFIED) == "raw"
    _, seen = deidentify_seen(data, Pseudonymiser(SECRET), MODIFIED, capture=metadata.CAPTURE)
    assert seen is not None
    with pytest.raises(metadata._NotPlain):
        metadata._plain_row(seen, None)
    result = compare(data)
    assert result.metadata["body_part"] == "['KNEE', 'LEG']"
    assert metadata.row_seen(seen) == result.metadata


# ------------------------------------------------------------------------ no second parse


def test_everyday_files_go_through_without_any_pydicom_parse(monkeypatch) -> None:
    """The point of the change: with pydicom's reader and the old checks made to fail, the worker
    still gives the same results (and an odd file still falls back, so the guard is real)."""
    files = {name: Path(get_testdata_file(name)).read_bytes() for name in EVERYDAY}
    expected = {
        name: fields(process_reference(settings(), WorkItem(0, name, d, "c" * 64)))
        for name, d in files.items()
    }

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a pydicom parse in the worker")

    monkeypatch.setattr(pydicom, "dcmread", refuse)
    monkeypatch.setattr(pipeline, "dicom_problem", refuse)
    monkeypatch.setattr(metadata, "row", refuse)
    for name, data in files.items():
        assert fields(process(settings(), WorkItem(0, name, data, "c" * 64))) == expected[name], name
        assert expected[name][1] in ("stored", "quarantined"), name
    big_endian = Path(get_testdata_file("MR_small_bigendian.dcm")).read_bytes()
    fallback = process(settings(), WorkItem(0, "b.dcm", big_endian, "c" * 64))
    assert fallback.outcome == "error" and fallback.reasons == ["cannot process: AssertionError"]
