"""De-identify one DICOM file under PS3.15 Annex E: pure, bytes in → bytes + report out.

Why one pass over a parsed dataset with a table lookup per element, plus a VR safety net: the
table (``profile``) says what to do with the attributes the standard knows about, at every
sequence depth; anything it does not cover — newer attributes, vendor misuse — still gets a safe
action by VR (names emptied, dates removed or shifted, UIDs pseudonymised, free text removed).
Private tags go unless allow-listed under Retain Safe Private. The file meta is rebuilt and the
preamble zeroed. Pixel data is never decoded: its element value is written back byte for byte.
The finished bytes are then searched for every original value the profile changed (``scan``).
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from sanctum.deid.clean import CONTENT_TEXT_KEYWORDS, clean_action
from sanctum.deid.profile import Options, Table, effective_action, load_table, method_codes
from sanctum.deid.pseudonyms import Pseudonymiser, shift_da, shift_dt
from sanctum.deid.scan import scan

STANDARD_UID_PREFIX = "1.2.840.10008."
PATIENT_ID = 0x00100020
PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
FREE_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
STRING_VRS = FREE_TEXT_VRS | {"PN", "DA", "DT", "TM", "UI", "AE", "CS", "AS", "IS", "DS", "UR"}
#: Coded-concept attributes: vocabulary, not identifiers, so a removed sequence's codes are not
#: searched for (the same codes legitimately remain elsewhere, e.g. in our own method codes).
CODE_KEYWORDS = frozenset(
    {
        "CodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "CodeMeaning",
        "LongCodeValue",
        "URNCodeValue",
        "ContextIdentifier",
        "MappingResource",
    }
)
#: Our Implementation Class UID: a fixed UUID-derived UID, so no third party's UID root (which
#: could be the prefix of an original UID) is written into the meta group.
IMPLEMENTATION_UID = "2.25." + str(int.from_bytes(hashlib.sha256(b"sanctum.deid").digest()[:16], "big"))
#: Dummy values for the D action, by VR; none of them is identifying.
DUMMY = {
    "PN": "ANONYMOUS",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "CS": "ANONYMIZED",
    "AE": "ANONYMOUS",
    "UR": "urn:sanctum:anonymized",
    **dict.fromkeys(FREE_TEXT_VRS, "ANONYMIZED"),
}
#: SOP Classes whose images routinely carry burned-in text: ultrasound and secondary capture.
BURNED_IN_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.6.1",
        "1.2.840.10008.5.1.4.1.1.6.2",
        "1.2.840.10008.5.1.4.1.1.3.1",
        "1.2.840.10008.5.1.4.1.1.7",
        "1.2.840.10008.5.1.4.1.1.7.1",
        "1.2.840.10008.5.1.4.1.1.7.2",
        "1.2.840.10008.5.1.4.1.1.7.3",
        "1.2.840.10008.5.1.4.1.1.7.4",
    }
)
#: (modality, manufacturer substring) pairs flagged for review; "" matches any manufacturer.
DEFAULT_BURNED_IN_RULES: tuple[tuple[str, str], ...] = (("US", ""), ("XC", ""), ("SC", ""), ("OT", ""))
#: Implementation Version Name written into every output's file meta.
IMPLEMENTATION_VERSION = "SANCTUM_DEID"
#: File meta attributes whose original values are searched for in the output (they are not copied).
META_SCANNED = (
    "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle",
    "MediaStorageSOPInstanceUID",
)
#: Values this module writes itself (dummies): never searched for, they would always be found.
WRITTEN_VALUES = frozenset(DUMMY.values())


@dataclass
class Report:
    """What was done, as counts per ``keyword:action`` — never any identifying value."""

    actions: Counter[str] = field(default_factory=Counter)
    table_edition: str = ""
    scan_hits: list[str] = field(default_factory=list)


@dataclass
class Result:
    """Output bytes (``None`` when rejected or when the byte scan found a leak) and why."""

    output: bytes | None
    report: Report
    quarantine_reasons: list[str] = field(default_factory=list)
    rejected: str | None = None


class _Walk:
    """State of one de-identification pass: options, pseudonymiser, report, originals to scan."""

    def __init__(self, pseudonymiser: Pseudonymiser, options: Options, patient_key: str) -> None:
        self.p, self.options, self.table = pseudonymiser, options, load_table()
        self.report = Report(table_edition=self.table.edition)
        self.originals: list[tuple[str, str]] = []
        self.offset = pseudonymiser.date_offset_days(pseudonymiser.patient_id(patient_key))

    def remember(self, name: str, elem: DataElement) -> None:
        """Record the original string values of ``elem`` (and inside it) for the byte scan."""
        if elem.VR == "SQ":
            for item in elem.value or []:
                for inner in item.iterall():
                    if inner.VR == "SQ" or inner.keyword in CODE_KEYWORDS or inner.tag.is_private:
                        continue
                    clean = lambda e=inner: clean_action(e, self.options)  # noqa: E731
                    inner_action = nested_action(self.table, self.options, int(inner.tag), inner.VR, clean)
                    if inner_action not in ("K", "R", "RC"):
                        self.remember(name, inner)
            return
        if elem.VR not in STRING_VRS or elem.VR in ("IS", "DS") or elem.value is None:
            return
        values = (
            elem.value if isinstance(elem.value, list | tuple | pydicom.multival.MultiValue) else [elem.value]
        )
        for value in values:
            text = str(value)
            if text and not text.startswith(STANDARD_UID_PREFIX):
                self.originals.append((name, text))

    def uid(self, value: str) -> str:
        """Pseudonymise one UID, keeping standard (non-identifying) UIDs such as SOP Classes."""
        return pseudonymise_uid(self.p, value)

    def net_action(self, elem: DataElement) -> str:
        """The safety-net action for a public element the table does not cover, by VR."""
        return net_action(elem.VR, self.options)

    def dataset(self, ds: Dataset, cleaning: bool = False) -> None:
        """Apply the profile to every element of ``ds``, recursing into sequences.

        ``cleaning`` is set inside a sequence that an option keeps or cleans (K or C on a sequence):
        there coded concepts are vocabulary the option means to keep, and content-item text is
        cleaned rather than removed, so the tree stays a valid SR / code sequence.
        """
        for elem in list(ds):
            tag = int(elem.tag)
            if elem.tag.element == 0 or tag in PIXEL_DATA_TAGS:
                if elem.tag.element == 0:
                    del ds[tag]  # group lengths would be stale after the edit
                continue
            if elem.tag.is_private:
                self.private(ds, elem)
                continue
            action = element_action(
                self.table,
                self.options,
                tag,
                elem.VR,
                elem.keyword,
                cleaning,
                lambda e=elem: clean_action(e, self.options),
            )
            self.apply(ds, elem, action, cleaning)

    def private(self, ds: Dataset, elem: DataElement) -> None:
        """Remove a private element unless its (creator, element byte) is allow-listed."""
        allowed = self.options.safe_private if self.options.retain_safe_private else frozenset()
        group, number = elem.tag.group, elem.tag.element
        if 0x10 <= number <= 0xFF:  # a private creator: keep only if something under it is kept
            keep = any(creator == str(elem.value).strip() for creator, _ in allowed)
        else:
            creator_elem = ds.get((group, number >> 8))
            creator = str(creator_elem.value).strip() if creator_elem is not None else ""
            keep = (creator, number & 0xFF) in allowed
        self.report.actions["private:" + ("K" if keep else "X")] += 1
        if not keep:
            del ds[elem.tag]

    def apply(self, ds: Dataset, elem: DataElement, action: str, cleaning: bool = False) -> None:
        """Carry out one action on ``elem`` in ``ds``; count it; remember what it replaced."""
        name = elem.keyword or str(elem.tag)
        self.report.actions[f"{name}:{action}"] += 1
        if action in ("R", "RC"):
            for item in elem.value or []:
                self.dataset(item, cleaning or action == "RC")
            return
        if action == "K":
            return
        self.remember(name, elem)
        if action == "X":
            del ds[elem.tag]
        elif action == "Z":
            elem.value = Sequence() if elem.VR == "SQ" else None
        elif action == "D":
            self.dummy(elem)
        elif action == "U":
            elem.value = [self.uid(v) for v in _values(elem)] if elem.value else None
        elif action == "P":
            elem.value = self.p.patient_id(str(elem.value)) if elem.value else None
        elif action == "S":
            shift = shift_da if elem.VR == "DA" else shift_dt
            shifted = [shift(str(v), self.offset) for v in _values(elem)]
            elem.value = None if None in shifted or not shifted else shifted
        else:  # pragma: no cover - effective_action returns only the actions above
            raise ValueError(f"unknown action {action!r}")

    def dummy(self, elem: DataElement) -> None:
        """Replace by a non-identifying value of the same VR (D)."""
        vr = elem.VR
        if vr == "SQ":
            elem.value = Sequence()
        elif vr == "UI":
            elem.value = [self.uid(v) for v in _values(elem)] if elem.value else None
        elif vr in DUMMY:
            elem.value = DUMMY[vr]
        elif vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
            elem.value = 0
        else:
            elem.value = b"\x00\x00"


def pseudonymise_uid(pseudonymiser: Pseudonymiser, value: str) -> str:
    """One UID's pseudonym; standard (non-identifying) UIDs such as SOP Classes are kept."""
    return value if str(value).startswith(STANDARD_UID_PREFIX) else pseudonymiser.uid(str(value))


def net_action(vr: str, options: Options) -> str:
    """The safety-net action for a public element the table does not cover, by VR."""
    longitudinal = options.longitudinal
    if vr == "PN":
        return "Z"
    if vr in ("DA", "DT"):
        return {"full": "K", "modified": "S"}.get(longitudinal, "Z")
    if vr == "TM":
        return "Z" if longitudinal == "none" else "K"
    if vr == "UI":
        return "K" if options.retain_uids else "U"
    if vr in FREE_TEXT_VRS:
        return "X"
    return "R" if vr == "SQ" else "K"  # R: recurse into a sequence the table does not name


def element_action(
    table: Table,
    options: Options,
    tag: int,
    vr: str,
    keyword: str,
    cleaning: bool,
    clean: Callable[[], str],
) -> str:
    """The one action for a public element: its table row (or the VR net) under ``options``.

    Shared by the reference walk here and the raw-bytes path (``dicom_raw``) so both decide alike.
    ``clean`` carries out C for this element (it may need the element's value, so it is lazy).
    """
    rule = table.rule(tag)
    action = effective_action(rule, options, vr) if rule else net_action(vr, options)
    if cleaning and keyword in CODE_KEYWORDS:
        action = "K"
    elif cleaning and keyword in CONTENT_TEXT_KEYWORDS:
        action = "C"
    if tag == PATIENT_ID:
        action = "P"
    if action == "C":
        action = clean()
    elif action == "K" and vr == "SQ":
        action = "RC"  # K on a sequence: keep it, clean its items (Table E.1-1a)
    if vr == "UN" and action in ("U", "S", "P", "RC", "R"):
        action = "X"  # an unparsed value cannot be mapped, shifted or walked into: remove it
    return action


def nested_action(table: Table, options: Options, tag: int, vr: str, clean: Callable[[], str]) -> str:
    """The action an element inside a removed or emptied sequence would get (what to remember)."""
    rule = table.rule(tag)
    action = effective_action(rule, options, vr) if rule else net_action(vr, options)
    return clean() if action == "C" else action


def _values(elem: DataElement) -> list[str]:
    """The values of a (possibly multi-valued) string element as a list."""
    value = elem.value
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def burned_in_reasons(
    ds: Dataset,
    rules: tuple[tuple[str, str], ...] = DEFAULT_BURNED_IN_RULES,
) -> list[str]:
    """Why this image may carry burned-in text (empty list: no known reason)."""
    return burned_in_reasons_for(
        str(ds.get("BurnedInAnnotation", "")),
        str(ds.get("SOPClassUID", "")),
        str(ds.get("Modality", "")),
        str(ds.get("Manufacturer", "")),
        rules,
    )


def burned_in_reasons_for(
    burned_in: str,
    sop_class: str,
    modality: str,
    manufacturer: str,
    rules: tuple[tuple[str, str], ...] = DEFAULT_BURNED_IN_RULES,
) -> list[str]:
    """``burned_in_reasons`` from the four attribute values as text ("" when absent)."""
    reasons = []
    if burned_in.upper() == "YES":
        reasons.append("BurnedInAnnotation is YES")
    if sop_class in BURNED_IN_SOP_CLASSES:
        reasons.append("SOP Class is ultrasound or secondary capture")
    maker = manufacturer.upper()
    for rule_modality, rule_maker in rules:
        if modality == rule_modality and rule_maker.upper() in maker:
            reasons.append(f"modality {modality} is on the burned-in text rule list")
    return reasons


def _transfer_syntax(ds: Dataset) -> str:
    """The transfer syntax to write: the file's own, else inferred from how it was read."""
    meta_ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if meta_ts:
        return str(meta_ts)
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def marker_values(options: Options, edition: str) -> tuple[list[str], list[tuple[str, str]], str]:
    """DeidentificationMethod values, the CID 7050 (code, meaning) pairs and the date marker."""
    codes = method_codes(options)
    method = [f"Sanctum PS3.15 E.1-1 {edition}", *(meaning for _, meaning in codes)]
    longitudinal = {"full": "UNMODIFIED", "modified": "MODIFIED"}.get(options.longitudinal, "REMOVED")
    return method, codes, longitudinal


def _markers(ds: Dataset, options: Options, edition: str) -> None:
    """Write PatientIdentityRemoved, the method text and CID 7050 codes, and the date marker."""
    method, codes, longitudinal = marker_values(options, edition)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = method
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    ds.LongitudinalTemporalInformationModified = longitudinal


def _file_meta(ds: Dataset, old: FileMetaDataset, walk: _Walk) -> FileMetaDataset:
    """A new file meta group: only what the written dataset needs, nothing carried over."""
    for keyword in META_SCANNED:
        if keyword in old and not (keyword == "MediaStorageSOPInstanceUID" and walk.options.retain_uids):
            walk.remember(keyword, old[keyword])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = _transfer_syntax(ds)
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    return meta


def _iter_reasons(ds: Dataset) -> Iterator[str]:
    """Why a parsed dataset cannot be de-identified as a composite instance, if it cannot."""
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        if not ds.get(keyword):
            yield f"no {keyword}: not a composite DICOM instance"


def deidentify(
    data: bytes,
    pseudonymiser: Pseudonymiser,
    options: Options | None = None,
    burned_in_rules: tuple[tuple[str, str], ...] = DEFAULT_BURNED_IN_RULES,
) -> Result:
    """De-identify one DICOM file. Never raises on bad input: it returns a rejected Result instead."""
    options = options or Options()
    report = Report(table_edition=load_table().edition)
    stage = "reading"
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        problems = list(_iter_reasons(ds))
        if problems:
            return Result(None, report, rejected="; ".join(problems))
        transfer_syntax = _transfer_syntax(ds)
        old_meta = ds.file_meta if hasattr(ds, "file_meta") else FileMetaDataset()
        reasons = burned_in_reasons(ds, burned_in_rules)
        walk = _Walk(pseudonymiser, options, str(ds.get("PatientID", "")))
        stage = "de-identifying"
        walk.dataset(ds)
        _markers(ds, options, walk.table.edition)
        ds.file_meta = _file_meta(ds, old_meta, walk)
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        ds.preamble = b"\x00" * 128
        stage = "writing"
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        output = out.getvalue()
    except Exception as exc:  # any parse/encode failure is a rejection, never a crash
        # Only the stage and exception type: pydicom's messages can quote element values.
        return Result(None, report, rejected=f"cannot de-identify: {type(exc).__name__} while {stage}")
    return conclude(output, walk.report, walk.originals, reasons)


def conclude(
    output: bytes,
    report: Report,
    originals: list[tuple[str, str]],
    reasons: list[str],
    scanner: Callable[[bytes, list[tuple[str, str]]], list[str]] = scan,
) -> Result:
    """Byte-scan a finished output for the originals; a hit withholds it (shared by both paths)."""
    report.scan_hits = scanner(output, [(n, v) for n, v in originals if v not in WRITTEN_VALUES])
    if report.scan_hits:
        reasons.append("original identifying value still present in: " + ", ".join(report.scan_hits))
        return Result(None, report, reasons)
    return Result(output, report, reasons)
