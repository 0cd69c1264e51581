"""Tests for the pure DICOM de-identification core (sanctum.deid.dicom).

The proof the issue asks for: a generator puts a unique marker into every row of Table E.1-1,
every de-identification-relevant VR, nested sequences, private tags, the file meta and the
preamble; after de-identification a byte search finds exactly the markers the options retain.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from sanctum.deid import profile
from sanctum.deid.dicom import burned_in_reasons, deidentify
from sanctum.deid.profile import (
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


def test_table_source_and_option_columns_are_rows_of_the_table() -> None:
    table = load_table()
    assert TABLE_EDITION == "2026c" == table.edition
    assert len(table.rows()) > 600
    assert {r.action for r in table.rows()} <= {"X", "Z", "D", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
    for name, column in OPTION_COLUMNS.items():
        assert column, name
        assert all(tag in table.exact for tag in column), name
    assert {(r.tag, r.mask) for r in table.masked} == set(profile.CLEAN_GRAPHICS_MASKED)
    assert table.rule(0x60024000).action == "X"  # repeating-group row (overlay comments)


OPTION_COLUMNS = {
    "device K": profile.DEVICE_IDENTITY,
    "device C": profile.DEVICE_IDENTITY_CLEAN,
    "institution K": profile.INSTITUTION_IDENTITY,
    "characteristics K": profile.PATIENT_CHARACTERISTICS,
    "characteristics C": profile.PATIENT_CHARACTERISTICS_CLEAN,
    "clean descriptors C": profile.CLEAN_DESCRIPTORS,
    "clean structured C": profile.CLEAN_STRUCTURED_CONTENT,
    "clean graphics C": profile.CLEAN_GRAPHICS,
    "uids K": profile.RETAIN_UIDS_EXTRA,
    "dates K": profile.LONGITUDINAL_EXTRA,
}


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
        (
            Options(clean_descriptors=True, clean_structured_content=True, clean_graphics=True),
            ["113100", "113105", "113104", "113103"],
            "REMOVED",
        ),
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


def test_garbage_is_rejected_not_raised() -> None:
    for data in (b"", b"not dicom at all", b"\x00" * 128 + b"DICM" + b"\xff" * 40):
        result = deidentify(data, Pseudonymiser(KEY))
        assert result.output is None and result.rejected


def _roundtrip(ds: Dataset, options: Options) -> Dataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    result = deidentify(buf.getvalue(), Pseudonymiser(KEY), options)
    assert result.output is not None, (result.rejected, result.quarantine_reasons)
    return pydicom.dcmread(io.BytesIO(result.output))


def _code(value: str, meaning: str) -> Sequence:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return Sequence([item])


def _content_item(value_type: str, **values: object) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", value_type
    item.ConceptNameCodeSequence = _code("121071", "Finding")
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def test_clean_structured_content_keeps_tree_and_codes() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    leaf = _content_item("TEXT", TextValue="Seen by Dr SMITHERS on ward 7")
    deepest = _content_item("CONTAINER", ContinuityOfContent="SEPARATE", ContentSequence=Sequence([leaf]))
    items = [
        _content_item("PNAME", PersonName="SMITHERS^WAYLON"),
        _content_item("DATE", Date="20190402"),
        _content_item("UIDREF", UID="1.2.3.4.5.6.7.8"),
        _content_item("CODE", ConceptCodeSequence=_code("R-42453", "Benign")),
        deepest,
    ]
    ds.ContentSequence = Sequence(items)
    basic = _roundtrip(ds, Options())
    assert not basic.get("ContentSequence")
    out = _roundtrip(ds, Options(clean_structured_content=True))
    pname, date, uidref, code, container = out.ContentSequence
    assert [i.ValueType for i in out.ContentSequence] == ["PNAME", "DATE", "UIDREF", "CODE", "CONTAINER"]
    assert pname.ConceptNameCodeSequence[0].CodeValue == "121071"
    assert pname.PersonName and "SMITHERS" not in str(pname.PersonName)
    assert date.Date and date.Date != "20190402"
    assert uidref.UID.startswith("2.25.")
    assert code.ConceptCodeSequence[0].CodeMeaning == "Benign"
    text = container.ContentSequence[0]
    assert text.TextValue and "SMITHERS" not in text.TextValue
    shifted = _roundtrip(ds, Options(clean_structured_content=True, longitudinal="modified"))
    assert shifted.ContentSequence[1].Date != "20190402"
    leaf.TextValue = "No acute findings"
    safe_options = Options(clean_structured_content=True, safe_values=frozenset({"no acute findings"}))
    safe = _roundtrip(ds, safe_options)
    assert safe.ContentSequence[4].ContentSequence[0].TextValue == "No acute findings"


def test_clean_graphics_keeps_geometry_drops_text_and_overlays() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    text, graphic, annotation = Dataset(), Dataset(), Dataset()
    text.UnformattedTextValue, text.AnchorPointAnnotationUnits = "PATIENT SMITHERS", "PIXEL"
    text.AnchorPoint, text.AnchorPointVisibility = [10.0, 10.0], "Y"
    graphic.GraphicAnnotationUnits, graphic.GraphicDimensions, graphic.GraphicType = "PIXEL", 2, "POLYLINE"
    graphic.NumberOfGraphicPoints, graphic.GraphicData = 2, [1.0, 1.0, 5.0, 5.0]
    annotation.GraphicLayer = "LAYER1"
    annotation.TextObjectSequence, annotation.GraphicObjectSequence = Sequence([text]), Sequence([graphic])
    ds.GraphicAnnotationSequence = Sequence([annotation])
    ds.add_new(0x60000010, "US", 4)
    ds.add_new(0x60003000, "OW", b"\xff" * 4)
    ds.add_new(0x60004000, "LT", "overlay by SMITHERS")
    assert not _roundtrip(ds, Options()).get("GraphicAnnotationSequence")
    out = _roundtrip(ds, Options(clean_graphics=True))
    kept = out.GraphicAnnotationSequence[0]
    assert kept.GraphicObjectSequence[0].GraphicData == [1.0, 1.0, 5.0, 5.0]
    assert "SMITHERS" not in str(kept.TextObjectSequence[0].get("UnformattedTextValue", ""))
    assert 0x60003000 not in out and not out.get(0x60004000, DataElementStub()).value
    assert out[0x60000010].value == 4


class DataElementStub:
    value = None


def test_clean_descriptors_empties_unless_on_safe_list() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SeriesDescription, ds.StudyDescription = "CHEST PA", "Follow-up for Mr SMITHERS"
    ds.ImageComments = "CHEST PA"
    assert not _roundtrip(ds, Options()).get("SeriesDescription")
    out = _roundtrip(ds, Options(clean_descriptors=True, safe_values=frozenset({"chest pa"})))
    assert out.SeriesDescription == "CHEST PA" and out.ImageComments == "CHEST PA"
    assert "StudyDescription" in out and not out.StudyDescription
    plain = _roundtrip(ds, Options(clean_descriptors=True))
    assert not plain.SeriesDescription and not plain.StudyDescription


def test_device_ae_titles_are_cleaned_not_kept() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StationAETitle, ds.DeviceSerialNumber, ds.StationName = "SMITHERS_PC", "SN-123456", "CT-ROOM-2"
    out = _roundtrip(ds, Options(retain_device_identity=True))
    assert out.DeviceSerialNumber == "SN-123456" and out.StationName == "CT-ROOM-2"
    assert not out.get("StationAETitle")
