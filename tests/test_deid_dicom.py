"""Tests for the pure DICOM de-identification core (sanctum.deid.dicom).

The proof the issue asks for: a generator puts a unique marker into every row of Table E.1-1,
every de-identification-relevant VR, nested sequences, private tags, the file meta and the
preamble; after de-identification a byte search finds exactly the markers the options retain.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_dict
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from sanctum.deid.dicom import burned_in_reasons, deidentify
from sanctum.deid.profile import (
    DEVICE_IDENTITY,
    INSTITUTION_IDENTITY,
    PATIENT_CHARACTERISTICS,
    TABLE_EDITION,
    Options,
    effective_action,
    load_table,
)
from sanctum.deid.pseudonyms import Pseudonymiser, shift_da
from sanctum.deid.scan import scan

KEY = b"project-one-secret-key-0123456789abcdef"
OTHER_KEY = b"project-two-secret-key-0123456789abcdef"
PRIVATE_CREATOR = "SANCTUM TEST"
SKIP_GROUPS = {0x0000, 0x0002, 0xFFFC}
NUMERIC_BINARY = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}
STRINGY = {"PN", "LO", "SH", "ST", "LT", "UT", "UC", "AE", "CS", "UR"}
NET_VRS = ("PN", "DA", "DT", "TM", "LO", "SH", "ST", "LT", "UT", "UI")
OPTION_SETS = {
    "basic": Options(),
    "retain_uids": Options(retain_uids=True),
    "device": Options(retain_device_identity=True),
    "institution": Options(retain_institution_identity=True),
    "characteristics": Options(retain_patient_characteristics=True),
    "full_dates": Options(longitudinal="full"),
    "modified_dates": Options(longitudinal="modified"),
    "safe_private": Options(retain_safe_private=True, safe_private=frozenset({(PRIVATE_CREATOR, 0x01)})),
}


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.simplefilter("ignore", UserWarning)


@dataclass
class Marker:
    """One placed marker: where it is, its bytes, and a function saying whether options keep it."""

    where: str
    value: str
    retained: object  # Callable[[Options], bool]


class Generator:
    """Builds a marker-laden DICOM file from a pydicom sample."""

    def __init__(self) -> None:
        self.n = 0
        self.markers: list[Marker] = []

    def value(self, vr: str) -> str | None:
        """A unique, VR-valid marker value; None for VRs whose bytes cannot carry one."""
        self.n += 1
        n = self.n
        if vr in STRINGY:
            return f"MK{n:05d}Z"
        if vr == "UI":
            return f"1.2.3.999.{10000 + n}"
        if vr in ("DA", "DT"):
            day = (dt.date(1000, 1, 1) + dt.timedelta(days=n)).strftime("%Y%m%d")
            return day if vr == "DA" else day + "121314"
        if vr == "TM":
            return f"121314.{n:06d}"
        if vr in ("IS", "DS"):
            return str(700000 + n)
        return None

    def element(self, ds: Dataset, tag: int, vr: str, where: str, retained: object) -> None:
        """Add one element with a marker (or a neutral value for binary VRs)."""
        value = self.value(vr)
        if vr == "SQ":
            ds.add_new(tag, vr, Sequence([self.nested(where, retained)]))
            return
        if value is None:
            ds.add_new(tag, vr, 0 if vr in NUMERIC_BINARY else (None if vr == "AS" else b"\x00\x00"))
            return
        ds.add_new(tag, vr, value)
        self.markers.append(Marker(where, value, retained))

    def nested(self, where: str, retained: object) -> Dataset:
        """An item with a table attribute and an untabled nested sequence inside."""
        item = Dataset()
        self.element(item, 0x00100010, "PN", where + "/PatientName", lambda o, r=retained: r(o) is True)
        inner = Dataset()
        for vr in NET_VRS:
            self.element(
                inner,
                untabled(vr),
                vr,
                f"{where}/seq/{vr}",
                lambda o, r=retained, v=vr: r(o) is True or (r(o) == "walk" and net_kept(v, o)),
            )
        item.add_new(untabled("SQ"), "SQ", Sequence([inner]))
        return item


def net_kept(vr: str, o: Options) -> bool:
    """Whether the VR safety net keeps an untabled element of this VR under ``o``."""
    return (
        (vr == "UI" and o.retain_uids)
        or (vr in ("DA", "DT") and o.longitudinal == "full")
        or (vr == "TM" and o.longitudinal != "none")
    )


def untabled(vr: str) -> int:
    """The first current public tag of this VR (VM 1) that Table E.1-1 does not list."""
    table = load_table()
    for keyword, tag in sorted(keyword_dict.items(), key=lambda kv: kv[1]):
        if (tag >> 16) in SKIP_GROUPS | {0x0008} or table.rule(tag) or "Retired" in keyword:
            continue
        if dictionary_VR(tag) == vr and dictionary_VM(tag) == "1":
            return tag
    raise LookupError(vr)


def build_marker_file() -> tuple[bytes, list[Marker], dict[int, str]]:
    """CT_small plus a marker in every table row, nested sequences, private tags, meta, preamble."""
    gen = Generator()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    placed: dict[int, str] = {}
    for rule in load_table().exact.values():
        if rule.tag >> 16 in SKIP_GROUPS or not rule.vr or rule.tag == 0x00080018:
            continue
        gen.element(
            ds, rule.tag, rule.vr, f"{rule.tag:08X}", lambda o, r=rule: effective_action(r, o, r.vr) == "K"
        )
        placed[rule.tag] = rule.vr
    ds.SOPInstanceUID = gen.value("UI")
    gen.markers.append(Marker("SOPInstanceUID", ds.SOPInstanceUID, lambda o: o.retain_uids))
    for vr in NET_VRS:  # top-level elements the table does not cover: the VR safety net
        gen.element(ds, untabled(vr), vr, f"net/{vr}", lambda o, v=vr: net_kept(v, o))
    gen.element(ds, 0x60004000, "LT", "overlay comments", lambda o: False)  # masked 60xx row
    ds.add_new(untabled("SQ"), "SQ", Sequence([gen.nested("untabled-sq", lambda o: "walk")]))
    block = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
    for offset in (0x01, 0x02):
        value = gen.value("LO")
        block.add_new(offset, "LO", value)
        gen.markers.append(
            Marker(
                f"private {offset}",
                value,
                lambda o, off=offset: o.retain_safe_private and (PRIVATE_CREATOR, off) in o.safe_private,
            )
        )
    meta = ds.file_meta
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword in ("SourceApplicationEntityTitle", "ImplementationVersionName"):
        setattr(meta, keyword, gen.value("AE"))
        gen.markers.append(Marker(keyword, getattr(meta, keyword), lambda o: False))
    ds.preamble = b"MKPREAMBLE" + b"\x00" * 118
    gen.markers.append(Marker("preamble", "MKPREAMBLE", lambda o: False))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), gen.markers, placed


@pytest.fixture(scope="module")
def marker_file() -> tuple[bytes, list[Marker], dict[int, str]]:
    return build_marker_file()


def far_key() -> Pseudonymiser:
    """A key whose date offset exceeds the generator's date spread, so shifts never collide."""
    for i in range(1000):
        p = Pseudonymiser(KEY + bytes([i]))
        if abs(p.date_offset_days(p.patient_id("1CT1"))) > 3000:
            return p
    raise AssertionError("no key with a large offset")


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_byte_search_finds_exactly_the_retained_markers(marker_file, name) -> None:
    data, markers, _ = marker_file
    options = OPTION_SETS[name]
    for marker in markers:  # sanity: the generator really wrote every marker
        assert marker.value.encode() in data, marker.where
    result = deidentify(data, far_key(), options)
    assert result.output is not None, (result.rejected, result.quarantine_reasons)
    leaked = [
        m.where for m in markers if m.value.encode() in result.output and m.retained(options) is not True
    ]
    lost = [m.where for m in markers if m.value.encode() not in result.output and m.retained(options) is True]
    assert leaked == [] and lost == []
    if name != "basic":
        assert any(m.retained(options) is True for m in markers), "option retained nothing"


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_every_table_row_is_honoured(marker_file, name) -> None:
    data, _, placed = marker_file
    options = OPTION_SETS[name]
    src = pydicom.dcmread(io.BytesIO(data))
    result = deidentify(data, far_key(), options)
    out = pydicom.dcmread(io.BytesIO(result.output))
    table = load_table()
    checked = 0
    for tag, vr in placed.items():
        action = "P" if tag == 0x00100020 else effective_action(table.rule(tag), options, vr)
        before, after = src[tag].value, out.get(tag)
        if action == "X":
            assert after is None, f"{tag:08X} should be removed"
        elif action == "Z":
            assert after is not None and not after.value, f"{tag:08X} should be empty"
        elif action == "D":
            assert after is not None, f"{tag:08X} should hold a dummy"
            if vr in STRINGY | {"DA", "DT", "TM"}:
                assert after.value and after.value != before
        elif action == "U":
            assert str(after.value).startswith("2.25.") and after.value != before
        elif action == "K":
            assert after is not None and after.value == before, f"{tag:08X} should be kept"
        elif action == "S":
            assert after.value and after.value != before
        elif action == "P":
            assert after.value == far_key().patient_id(before)
        checked += 1
    assert checked == len(placed) > 600


def test_table_source_and_options_are_rows_of_the_table() -> None:
    table = load_table()
    assert TABLE_EDITION == "2026c" == table.edition
    assert len(table.rows()) > 600
    assert {r.action for r in table.rows()} <= {"X", "Z", "D", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
    for tag in DEVICE_IDENTITY | INSTITUTION_IDENTITY | PATIENT_CHARACTERISTICS:
        assert tag in table.exact
    assert table.rule(0x60024000).action == "X"  # repeating-group row (overlay comments)


def test_composite_actions_resolve_to_safer_branch() -> None:
    table = load_table()
    for rule in table.rows():
        action = effective_action(rule, Options(), rule.vr)
        assert action in {"X", "Z", "D", "U"}
        if rule.action in ("X/Z", "X/D", "X/Z/D"):
            assert action == "X"
        if rule.action == "X/Z/U*":
            assert action == ("U" if rule.vr == "UI" else "X")


def test_pseudonyms_deterministic_keyed_and_valid() -> None:
    one, two = Pseudonymiser(KEY), Pseudonymiser(OTHER_KEY)
    uid = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"
    assert one.uid(uid) == one.uid(uid) != two.uid(uid)
    assert one.uid(uid) != one.uid(uid + "1")
    assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", one.uid(uid)) and len(one.uid(uid)) <= 64
    assert one.patient_id("12345") == one.patient_id("12345") != two.patient_id("12345")
    assert len(one.patient_id("12345")) <= 64
    with pytest.raises(ValueError):
        Pseudonymiser(b"short")


def test_same_study_same_pseudonyms_across_uploads_not_across_projects() -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    a1 = pydicom.dcmread(io.BytesIO(deidentify(data, Pseudonymiser(KEY)).output))
    a2 = pydicom.dcmread(io.BytesIO(deidentify(data, Pseudonymiser(KEY)).output))
    b = pydicom.dcmread(io.BytesIO(deidentify(data, Pseudonymiser(OTHER_KEY)).output))
    assert a1.StudyInstanceUID == a2.StudyInstanceUID != b.StudyInstanceUID
    assert a1.PatientID == a2.PatientID != b.PatientID
    assert a1.file_meta.MediaStorageSOPInstanceUID == a1.SOPInstanceUID


def test_date_shift_preserves_intervals() -> None:
    p = Pseudonymiser(KEY)
    offset = p.date_offset_days(p.patient_id("patient-7"))
    assert offset != 0 and offset == p.date_offset_days(p.patient_id("patient-7"))
    first, second = shift_da("20200101", offset), shift_da("20200315", offset)
    parse = lambda s: dt.datetime.strptime(s, "%Y%m%d")  # noqa: E731
    assert (parse(second) - parse(first)).days == 74
    assert (parse(first) - dt.datetime(2020, 1, 1)).days == offset
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyDate, ds.SeriesDate = "20200101", "20200315"
    buf = io.BytesIO()
    ds.save_as(buf)
    out = pydicom.dcmread(io.BytesIO(deidentify(buf.getvalue(), p, Options(longitudinal="modified")).output))
    assert (parse(out.SeriesDate) - parse(out.StudyDate)).days == 74
    assert out.StudyDate != "20200101"


@pytest.mark.parametrize(
    ("options", "codes", "longitudinal"),
    [
        (Options(), ["113100"], "REMOVED"),
        (Options(retain_uids=True, longitudinal="full"), ["113100", "113110", "113106"], "UNMODIFIED"),
        (
            Options(
                retain_device_identity=True,
                retain_institution_identity=True,
                retain_patient_characteristics=True,
                longitudinal="modified",
            ),
            ["113100", "113109", "113112", "113108", "113107"],
            "MODIFIED",
        ),
        (Options(retain_safe_private=True), ["113100", "113111"], "REMOVED"),
    ],
)
def test_markers_written(options, codes, longitudinal) -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    out = pydicom.dcmread(io.BytesIO(deidentify(data, Pseudonymiser(KEY), options).output))
    assert out.PatientIdentityRemoved == "YES"
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == codes
    assert {i.CodingSchemeDesignator for i in out.DeidentificationMethodCodeSequence} == {"DCM"}
    assert out.DeidentificationMethod
    assert out.LongitudinalTemporalInformationModified == longitudinal


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm"]
)
def test_pixel_data_bytes_unchanged(name) -> None:
    data = Path(get_testdata_file(name)).read_bytes()
    before = pydicom.dcmread(io.BytesIO(data))
    result = deidentify(data, Pseudonymiser(KEY))
    after = pydicom.dcmread(io.BytesIO(result.output))
    assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
    assert after.PixelData == before.PixelData
    assert result.output[:128] == b"\x00" * 128


def _ds(**values: str) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_burned_in_flags() -> None:
    ds = Dataset()
    assert burned_in_reasons(ds) == []
    ds.BurnedInAnnotation = "YES"
    assert burned_in_reasons(ds)
    assert burned_in_reasons(_ds(SOPClassUID="1.2.840.10008.5.1.4.1.1.7"))  # secondary capture
    us = Dataset()
    us.Modality = "US"
    assert burned_in_reasons(us)
    assert burned_in_reasons(_ds(Modality="CT", Manufacturer="Acme"), (("CT", "acme"),))
    data = Path(get_testdata_file("examples_ybr_color.dcm")).read_bytes()
    assert deidentify(data, Pseudonymiser(KEY)).quarantine_reasons


def test_scan_hit_quarantines_and_names_attribute_only() -> None:
    assert scan(b"....SMITH^JOHN....", [("PatientName", "SMITH^JOHN")]) == ["PatientName"]
    assert scan(b"....JOHNSON....", [("PatientName", "DOE^JOHNSON")]) == ["PatientName"]
    assert scan(b"nothing here", [("PatientName", "SMITH^JOHN")]) == []
    # A name copied into an attribute no rule covers (here a retained private tag) is caught.
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    block = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", str(ds.PatientName))
    buf = io.BytesIO()
    ds.save_as(buf)
    options = Options(retain_safe_private=True, safe_private=frozenset({(PRIVATE_CREATOR, 0x01)}))
    result = deidentify(buf.getvalue(), Pseudonymiser(KEY), options)
    assert result.output is None and "PatientName" in result.report.scan_hits
    assert str(ds.PatientName) not in repr(result)


def test_report_counts_actions_without_values() -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    result = deidentify(data, Pseudonymiser(KEY))
    assert result.report.actions["PatientName:Z"] == 1
    assert result.report.table_edition == "2026c"
    assert "CompressedSamples^CT1" not in repr(result.report)


def _testdata() -> list[str]:
    return [f for f in get_testdata_files() if os.path.isfile(f)]


EVERYTHING = Options(
    retain_uids=True,
    retain_device_identity=True,
    retain_institution_identity=True,
    retain_patient_characteristics=True,
    longitudinal="modified",
    retain_safe_private=True,
)


@pytest.mark.parametrize("options", [Options(), EVERYTHING], ids=["basic", "all-options"])
@pytest.mark.parametrize("path", _testdata(), ids=os.path.basename)
def test_every_pydicom_test_file_deidentifies_or_is_rejected(path, options) -> None:
    data = Path(path).read_bytes()
    result = deidentify(data, Pseudonymiser(KEY), options)
    if result.output is None:
        assert result.rejected or result.quarantine_reasons
        return
    out = pydicom.dcmread(io.BytesIO(result.output))
    assert out.PatientIdentityRemoved == "YES"
    assert "PatientName" not in out or not out.PatientName
    assert not any(e.tag.is_private for e in out.iterall())
    before = pydicom.dcmread(io.BytesIO(data), force=True)
    if "PixelData" in before:
        assert out.PixelData == before.PixelData


def test_garbage_is_rejected_not_raised() -> None:
    for data in (b"", b"not dicom at all", b"\x00" * 128 + b"DICM" + b"\xff" * 40):
        result = deidentify(data, Pseudonymiser(KEY))
        assert result.output is None and result.rejected
