"""Proof of privacy for sanctum.deid.dicom: a marker in every place an identifier can hide.

A generator starts from pydicom's CT_small.dcm and writes a unique, VR-valid marker into every
row of Table E.1-1 (repeating-group rows included), into an untabled element of every
de-identification-relevant VR at top level and three sequence levels deep, into private tags with
and without a private creator, into the file meta (AE titles, implementation version, private
meta information) and into the preamble. After de-identification a byte search of the output must
find exactly the markers the chosen options retain, no more (a leak) and no fewer (a broken option).

Every check runs against both de-identification paths: the reference (``dicom.deidentify``, a
pydicom Dataset round trip) and the raw-bytes fast path (``dicom_raw.deidentify_raw``, which
raises rather than silently falling back, so these files really go through it).
"""

from __future__ import annotations

import datetime as dt
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_dict
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from sanctum.deid.clean import clean_action
from sanctum.deid.dicom import deidentify
from sanctum.deid.dicom_raw import deidentify_raw
from sanctum.deid.profile import Options, Rule, effective_action, load_table
from sanctum.deid.pseudonyms import Pseudonymiser

KEY = b"project-one-secret-key-0123456789abcdef"
PRIVATE_CREATOR = "SANCTUM TEST"
SKIP_GROUPS = {0x0000, 0x0002, 0xFFFC}
NUMERIC_BINARY = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}
STRINGY = {"PN", "LO", "SH", "ST", "LT", "UT", "UC", "AE", "CS", "UR"}
NET_VRS = ("PN", "DA", "DT", "TM", "LO", "SH", "ST", "LT", "UT", "UI")
#: Repeating-group rows, placed in a group other than the first: (tag, VR).
MASKED = ((0x60024000, "LT"), (0x50022500, "LO"))
OPTION_SETS = {
    "basic": Options(),
    "retain_uids": Options(retain_uids=True),
    "device": Options(retain_device_identity=True),
    "institution": Options(retain_institution_identity=True),
    "characteristics": Options(retain_patient_characteristics=True),
    "full_dates": Options(longitudinal="full"),
    "modified_dates": Options(longitudinal="modified"),
    "safe_private": Options(retain_safe_private=True, safe_private=frozenset({(PRIVATE_CREATOR, 0x01)})),
    "clean_descriptors": Options(clean_descriptors=True),
    "clean_structured": Options(clean_structured_content=True),
    "clean_graphics": Options(clean_graphics=True),
    "everything": Options(
        retain_uids=True,
        retain_device_identity=True,
        retain_institution_identity=True,
        retain_patient_characteristics=True,
        longitudinal="modified",
        retain_safe_private=True,
        safe_private=frozenset({(PRIVATE_CREATOR, 0x01)}),
        clean_descriptors=True,
        clean_structured_content=True,
        clean_graphics=True,
    ),
}
Retained = Callable[[Options], bool]
PATHS = {"reference": deidentify, "raw": deidentify_raw}


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.simplefilter("ignore", UserWarning)


@dataclass
class Marker:
    """One placed marker: where it is, its bytes, and whether the given options keep it."""

    where: str
    value: bytes
    retained: Retained


def never(_: Options) -> bool:
    return False


def net_kept(vr: str, o: Options) -> bool:
    """Whether the VR safety net keeps an untabled element of this VR under ``o``."""
    return (
        (vr == "UI" and o.retain_uids)
        or (vr in ("DA", "DT") and o.longitudinal == "full")
        or (vr == "TM" and o.longitudinal != "none")
    )


def row_kept(rule: Rule, vr: str, o: Options) -> bool:
    """Whether a table row's (non-sequence) value survives unchanged under ``o``."""
    action = effective_action(rule, o, vr)
    if action == "C":
        probe = pydicom.DataElement(rule.tag, vr, "x")
        action = clean_action(probe, o)
    return action == "K"


def sequence_walked(rule: Rule, o: Options) -> bool:
    """Whether a table sequence is kept and its items walked (K or C on a sequence)."""
    return effective_action(rule, o, "SQ") in ("K", "C")


@cache
def untabled(vr: str) -> int:
    """The first current public tag of this VR (VM 1) that Table E.1-1 does not list."""
    table = load_table()
    for keyword, tag in sorted(keyword_dict.items(), key=lambda kv: kv[1]):
        if (tag >> 16) in SKIP_GROUPS | {0x0008} or table.rule(tag) or "Retired" in keyword:
            continue
        if dictionary_VR(tag) == vr and dictionary_VM(tag) == "1":
            return tag
    raise LookupError(vr)


class Generator:
    """Builds a marker-laden DICOM file."""

    def __init__(self) -> None:
        self.n = 0
        self.markers: list[Marker] = []

    def value(self, vr: str) -> str | None:
        """A unique marker that is a valid value of ``vr``; None for VRs that cannot carry one."""
        self.n += 1
        n = self.n
        if vr in STRINGY:
            return f"MK{n:05d}Z"
        if vr == "UI":
            return f"1.2.3.999.{10000 + n}"
        if vr in ("DA", "DT"):  # distinctive valid dates in the 11th century
            day = (dt.date(1000, 1, 1) + dt.timedelta(days=n)).strftime("%Y%m%d")
            return day if vr == "DA" else day + "121314"
        if vr == "TM":
            return f"121314.{n:06d}"
        if vr in ("IS", "DS"):
            return str(700000 + n)
        if vr == "AS":
            return f"{n % 1000:03d}W"
        return None

    def mark(self, where: str, value: str, retained: Retained) -> None:
        self.markers.append(Marker(where, value.encode(), retained))

    def element(self, ds: Dataset, tag: int, vr: str, where: str, retained: Retained) -> None:
        """Add one element with a marker (binary VRs get a neutral value and no marker)."""
        value = self.value(vr)
        if value is None:
            ds.add_new(tag, vr, 0 if vr in NUMERIC_BINARY else b"\x00\x00")
            return
        ds.add_new(tag, vr, value)
        self.mark(where, value, retained)

    def level(self, where: str, walked: Retained, depth: int) -> Dataset:
        """An item with net-VR markers, a private tag, and (if depth > 1) a deeper sequence."""
        item = Dataset()
        for vr in NET_VRS:
            self.element(
                item, untabled(vr), vr, f"{where}/{vr}", lambda o, w=walked, v=vr: w(o) and net_kept(v, o)
            )
        block = item.private_block(0x0029, "SANCTUM NESTED", create=True)
        value = self.value("LO")
        block.add_new(0x01, "LO", value)
        self.mark(f"{where}/private", value, never)
        if depth > 1:
            item.add_new(untabled("SQ"), "SQ", Sequence([self.level(where + "/seq", walked, depth - 1)]))
        return item

    def nested(self, where: str, walked: Retained) -> Dataset:
        """A sequence item holding a table attribute (never kept) and three untabled levels."""
        item = self.level(where, walked, 3)
        self.element(item, 0x00100010, "PN", where + "/PatientName", never)
        return item


def build_marker_file() -> tuple[bytes, list[Marker]]:
    """CT_small plus a marker everywhere an identifier can be."""
    gen = Generator()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    table = load_table()
    for rule in table.exact.values():
        if rule.tag >> 16 in SKIP_GROUPS or not rule.vr or rule.tag == 0x00080018:
            continue
        where = f"{rule.tag:08X}"
        if rule.vr == "SQ":
            ds.add_new(rule.tag, "SQ", Sequence([gen.nested(where, lambda o, r=rule: sequence_walked(r, o))]))
        else:
            gen.element(ds, rule.tag, rule.vr, where, lambda o, r=rule: row_kept(r, r.vr, o))
    for tag, vr in MASKED:
        rule = table.rule(tag)
        gen.element(ds, tag, vr, f"{tag:08X}", lambda o, r=rule, v=vr: row_kept(r, v, o))
    ds.SOPInstanceUID = gen.value("UI")
    gen.mark("SOPInstanceUID", ds.SOPInstanceUID, lambda o: o.retain_uids)
    for vr in NET_VRS:  # top-level elements the table does not cover: the VR safety net
        gen.element(ds, untabled(vr), vr, f"net/{vr}", lambda o, v=vr: net_kept(v, o))
    ds.add_new(untabled("SQ"), "SQ", Sequence([gen.nested("untabled-sq", lambda o: True)]))
    block = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
    for offset in (0x01, 0x02):
        value = gen.value("LO")
        block.add_new(offset, "LO", value)
        gen.mark(
            f"private {offset}",
            value,
            lambda o, off=offset: o.retain_safe_private and (PRIVATE_CREATOR, off) in o.safe_private,
        )
    orphan = gen.value("LO")  # a private element whose creator is missing
    ds.add_new(0x00111001, "LO", orphan)
    gen.mark("private without creator", orphan, never)
    meta = ds.file_meta
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ae_titles = ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ImplementationVersionName")
    for keyword in ae_titles:
        value = gen.value("AE")
        setattr(meta, keyword, value)
        gen.mark(keyword, value, never)
    meta.PrivateInformationCreatorUID = gen.value("UI")
    gen.mark("PrivateInformationCreatorUID", meta.PrivateInformationCreatorUID, never)
    meta.PrivateInformation = b"MKPRIVMETA"
    gen.mark("PrivateInformation", "MKPRIVMETA", never)
    ds.preamble = b"MKPREAMBLE" + b"\x00" * 118
    gen.mark("preamble", "MKPREAMBLE", never)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), gen.markers


@pytest.fixture(scope="module")
def marker_file() -> tuple[bytes, list[Marker]]:
    return build_marker_file()


@pytest.fixture(params=sorted(PATHS))
def deid(request):
    """Each de-identification path in turn."""
    return PATHS[request.param]


@cache
def far_key() -> Pseudonymiser:
    """A key whose date offset exceeds the generator's date spread, so shifts never collide."""
    for i in range(1000):
        p = Pseudonymiser(KEY + bytes([i]))
        if abs(p.date_offset_days(p.patient_id("1CT1"))) > 3000:
            return p
    raise AssertionError("no key with a large offset")


def test_generator_covers_the_table_and_nesting(marker_file) -> None:
    data, markers = marker_file
    assert all(m.value in data for m in markers), "the generator did not write every marker"
    assert len(markers) > 1000
    assert any(m.where.count("/seq") >= 2 for m in markers), "no marker three sequence levels deep"
    assert {m.where for m in markers} >= {"60024000", "50022500", "preamble", "private without creator"}


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_byte_search_finds_exactly_the_retained_markers(marker_file, name, deid) -> None:
    data, markers = marker_file
    options = OPTION_SETS[name]
    result = deid(data, far_key(), options)
    assert result.output is not None, (result.rejected, result.quarantine_reasons)
    leaked = [m.where for m in markers if m.value in result.output and not m.retained(options)]
    lost = [m.where for m in markers if m.value not in result.output and m.retained(options)]
    assert leaked == []
    assert lost == []
    if not name.startswith(("basic", "clean")):
        assert any(m.retained(options) for m in markers), "the option retained nothing"


@pytest.mark.parametrize(
    ("name", "keyword"),
    [
        ("device", "DeviceSerialNumber"),
        ("device", "StationName"),
        ("institution", "InstitutionName"),
        ("characteristics", "PatientSex"),
        ("characteristics", "PatientAge"),
        ("characteristics", "PatientSize"),
        ("characteristics", "PatientWeight"),
        ("retain_uids", "StudyInstanceUID"),
        ("full_dates", "StudyDate"),
    ],
)
def test_named_option_markers_survive(marker_file, name, keyword, deid) -> None:
    data, _ = marker_file
    src = pydicom.dcmread(io.BytesIO(data))
    out = pydicom.dcmread(io.BytesIO(deid(data, far_key(), OPTION_SETS[name]).output))
    assert out[keyword].value == src[keyword].value
    basic = pydicom.dcmread(io.BytesIO(deid(data, far_key(), Options()).output))
    assert keyword not in basic or basic[keyword].value != src[keyword].value


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_every_table_row_is_honoured(marker_file, name, deid) -> None:
    data, _ = marker_file
    options = OPTION_SETS[name]
    src = pydicom.dcmread(io.BytesIO(data))
    out = pydicom.dcmread(io.BytesIO(deid(data, far_key(), options).output))
    table, checked = load_table(), 0
    for elem in src:
        rule = table.rule(int(elem.tag))
        if rule is None or elem.tag.group in SKIP_GROUPS or elem.tag == 0x00080018 or elem.tag.is_private:
            continue
        tag, vr, before, after = int(elem.tag), elem.VR, elem.value, out.get(elem.tag)
        action = "P" if tag == 0x00100020 else effective_action(rule, options, vr)
        if action == "C":
            action = clean_action(elem, options)
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
        elif action in ("K", "RC") and vr != "SQ":
            assert after is not None and after.value == before, f"{tag:08X} should be kept"
        elif action in ("K", "RC"):
            assert after is not None and len(after.value) == len(before), f"{tag:08X} should be walked"
        elif action == "S":
            assert after.value and after.value != before
        elif action == "P":
            assert after.value == far_key().patient_id(before)
        checked += 1
    assert checked > 600
