"""The raw-bytes fast path (``sanctum.deid.dicom_raw``) gives the reference's result, or refuses.

"Same result" means: the same report (counts per action), the same quarantine reasons and byte-scan
hits, the same rejection, and an output whose every element — file meta included, at every sequence
depth — pydicom reads back equal to the reference's output. Checked on every file pydicom ships
(test files and character-set files), on the privacy generator's marker file in four encodings
under every option set, on seeded random option sets, and on seeded random damage to real files.

Where the fast path does not apply it raises ``Unsupported`` and ``deidentify_bytes`` returns the
reference's result unchanged. Where bytes are not well-formed it rejects the file with a clear
reason; the reference (pydicom) reads some such files leniently and writes a shortened copy, so
those are the only files where the results may differ, and they are named below.

No database is used: these are pure functions.
"""

from __future__ import annotations

import io
import os
import random
import struct
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file, get_testdata_files
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ImplicitVRLittleEndian

from sanctum.deid.dicom import Result, deidentify
from sanctum.deid.dicom_raw import Unsupported, deidentify_bytes, deidentify_raw
from sanctum.deid.dicom_raw_parse import MAX_DEPTH, Reader
from sanctum.deid.dicom_raw_scan import scan_fast
from sanctum.deid.dicom_raw_text import encodings_for, text_values
from sanctum.deid.profile import Options
from sanctum.deid.pseudonyms import Pseudonymiser
from sanctum.deid.scan import scan
from test_deid_dicom_privacy import OPTION_SETS, build_marker_file, far_key

KEY = Pseudonymiser(b"project-one-secret-key-0123456789abcdef")
EVERYTHING = OPTION_SETS["everything"]
CORPUS = sorted(f for f in [*get_testdata_files(), *get_charset_files()] if os.path.isfile(f))
#: Truncated files pydicom reads leniently (the reference writes a shortened copy); the fast path
#: rejects them as malformed.
TRUNCATED = {"MR_truncated.dcm", "rtplan_truncated.dcm"}
#: Everyday encodings: the fast path must handle them itself, not fall back.
COMMON = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "JPEG2000.dcm",
    "test-SR.dcm",
    "rtplan.dcm",
)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.simplefilter("ignore")


def _elements_differ(a: Dataset, b: Dataset, where: str = "") -> list[str]:
    """Every tag, VR or value that differs between two datasets, at every sequence depth."""
    found = [f"{where}{tag} only in one" for tag in sorted(set(a.keys()) ^ set(b.keys()))]
    for tag in sorted(set(a.keys()) & set(b.keys())):
        x, y = a[tag], b[tag]
        if x.VR != y.VR:
            found.append(f"{where}{tag} VR {x.VR} != {y.VR}")
        elif x.VR == "SQ":
            if len(x.value) != len(y.value):
                found.append(f"{where}{tag} has {len(x.value)} != {len(y.value)} items")
            for i, (p, q) in enumerate(zip(x.value, y.value, strict=False)):
                found += _elements_differ(p, q, f"{where}{tag}[{i}]")
        elif x.value != y.value:
            found.append(f"{where}{tag} value differs")
    return found


def differences(ref: Result, fast: Result) -> list[str]:
    """How ``fast`` differs from ``ref`` (empty: the same result)."""
    found = []
    if (ref.rejected, ref.quarantine_reasons) != (fast.rejected, fast.quarantine_reasons):
        found.append(
            f"outcome {ref.rejected, ref.quarantine_reasons} != {fast.rejected, fast.quarantine_reasons}"
        )
    if ref.report != fast.report:
        found.append(
            f"report: {ref.report.actions - fast.report.actions} / {fast.report.actions - ref.report.actions}"
        )
    if (ref.output is None) != (fast.output is None):
        found.append("one output is missing")
    elif ref.output is not None and fast.output is not None:
        a, b = pydicom.dcmread(io.BytesIO(ref.output)), pydicom.dcmread(io.BytesIO(fast.output))
        found += _elements_differ(a.file_meta, b.file_meta, "meta ") + _elements_differ(a, b)
        if fast.output[:132] != b"\x00" * 128 + b"DICM":
            found.append("preamble")
    return found


def check(data: bytes, key: Pseudonymiser, options: Options, name: str = "") -> str:
    """Compare both paths on one input: 'same', 'reference' (fast path not applicable), 'rejected'."""
    ref = deidentify(data, key, options)
    try:
        fast = deidentify_raw(data, key, options)
    except Unsupported:
        via_bytes = deidentify_bytes(data, key, options)
        assert via_bytes.output == ref.output and differences(ref, via_bytes) == []
        return "reference"
    if fast.rejected:
        assert fast.output is None and fast.rejected.startswith("malformed DICOM: ")
        assert ref.rejected or name in TRUNCATED, (name, fast.rejected)
        return "rejected"
    assert differences(ref, fast) == [], name
    return "same"


@pytest.mark.parametrize("options", [Options(), EVERYTHING], ids=["basic", "all-options"])
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: os.path.relpath(p, os.path.dirname(p) + "/.."))
def test_same_result_as_the_reference_on_every_pydicom_file(path, options) -> None:
    check(Path(path).read_bytes(), KEY, options, os.path.basename(path))


def test_the_fast_path_handles_most_of_the_corpus_itself() -> None:
    """A guard against 'same result' by falling back everywhere."""
    outcomes = {p: check(Path(p).read_bytes(), KEY, Options(), os.path.basename(p)) for p in CORPUS}
    assert sum(o == "same" for o in outcomes.values()) >= 140
    rejected = {os.path.basename(p) for p, o in outcomes.items() if o == "rejected"}
    assert rejected >= TRUNCATED  # any other file rejected as malformed is rejected by the reference too
    for name in COMMON:
        assert outcomes[get_testdata_file(name)] == "same", name
    # Everyday files come out byte for byte as the reference writes them.
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm"):
        data = Path(get_testdata_file(name)).read_bytes()
        assert deidentify_raw(data, KEY).output == deidentify(data, KEY).output


def _marker_variant(data: bytes, implicit: bool, undefined: bool) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    if undefined:
        for elem in ds.iterall():
            if elem.VR == "SQ":
                elem.is_undefined_length = True
                for item in elem.value:
                    item.is_undefined_length_sequence_item = True
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def marker_variants() -> dict[str, bytes]:
    data, _ = build_marker_file()
    return {
        "explicit": data,
        "implicit": _marker_variant(data, True, False),
        "undefined-lengths": _marker_variant(data, False, True),
        "implicit-undefined": _marker_variant(data, True, True),
    }


@pytest.mark.parametrize("variant", ["explicit", "implicit", "undefined-lengths", "implicit-undefined"])
def test_same_result_on_the_privacy_generator_files(marker_variants, variant) -> None:
    data = marker_variants[variant]
    with_safe_values = Options(
        clean_descriptors=True, clean_structured_content=True, safe_values=frozenset({"MK00042Z"})
    )
    option_sets = [*OPTION_SETS.items(), ("safe-values", with_safe_values)]
    if variant != "implicit-undefined":  # the encoding furthest from pydicom's own gets every option set
        keep = ("basic", "everything", "safe-values", "modified_dates", "safe_private", "clean_structured")
        option_sets = [(n, o) for n, o in option_sets if n in keep[: 6 if variant == "explicit" else 3]]
    for name, options in option_sets:
        assert check(data, far_key(), options, f"{variant}/{name}") == "same", name


def _random_options(rng: random.Random, ds: Dataset) -> Options:
    creators = [e.value for e in ds.iterall() if e.tag.is_private and 0x10 <= e.tag.element <= 0xFF]
    texts = [e.value for e in ds.iterall() if isinstance(e.value, str) and e.value]
    flags = (
        "retain_uids",
        "retain_device_identity",
        "retain_institution_identity",
        "retain_patient_characteristics",
        "clean_descriptors",
        "clean_structured_content",
        "clean_graphics",
    )
    kwargs: dict[str, object] = {flag: rng.random() < 0.4 for flag in flags}
    kwargs["longitudinal"] = rng.choice(["none", "full", "modified"])
    if creators and rng.random() < 0.6:
        picks = {(str(rng.choice(creators)).strip(), rng.randrange(0x40)) for _ in range(rng.randint(1, 20))}
        kwargs.update(retain_safe_private=True, safe_private=frozenset(picks))
    if texts and rng.random() < 0.6:
        kwargs["safe_values"] = frozenset(rng.sample(texts, min(len(texts), rng.randint(1, 10))))
    return Options(**kwargs)  # type: ignore[arg-type]


def test_same_result_under_random_option_sets(marker_variants) -> None:
    rng = random.Random(4)
    files = {
        name: Path(get_testdata_file(name)).read_bytes()
        for name in (*COMMON, "reportsi.dcm", "waveform_ecg.dcm")
    }
    files["chrX1.dcm"] = Path(next(f for f in CORPUS if f.endswith("chrX1.dcm"))).read_bytes()
    files["marker"] = marker_variants["implicit-undefined"]
    for _ in range(30):
        name = rng.choice(sorted(files))
        data = files[name]
        options = _random_options(rng, pydicom.dcmread(io.BytesIO(data)))
        key = far_key() if name == "marker" else KEY
        assert check(data, key, options, name) == "same", (name, options)


def test_scan_fast_finds_exactly_what_scan_finds() -> None:
    rng = random.Random(7)
    outputs = [
        deidentify(Path(get_testdata_file(n)).read_bytes(), KEY).output
        for n in ("CT_small.dcm", "JPEG2000.dcm")
    ]
    alphabet = "ABCXYZ0123456789.^=\\ -_\t\x00éü漢"
    for _ in range(400):
        out = bytearray(rng.choice(outputs))
        originals = []
        for i in range(rng.randint(1, 12)):
            value = "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 14)))
            originals.append((f"Attr{i % 4}", value))
            if rng.random() < 0.5:  # plant it, as UTF-8 or UTF-16 at either byte parity, anywhere
                raw = value.strip("\x00 ").encode("utf-16-le" if rng.random() < 0.4 else "utf-8")
                at = rng.randrange(len(out) - len(raw))
                out[at : at + len(raw)] = raw
        assert scan_fast(bytes(out), originals) == scan(bytes(out), originals)


def test_text_values_decode_as_pydicom_does() -> None:
    rng = random.Random(11)
    pieces = [*" \\\x00=^ABC123.-\t\n\x1f\x1b", "é", "\xff"]
    for vr in ("AE", "AS", "CS", "DA", "DT", "TM", "LO", "SH", "UC", "ST", "LT", "UT", "PN", "UI", "UR"):
        for _ in range(300):
            raw = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))).encode("latin-1")
            charset = rng.choice([None, b"ISO_IR 100", b"ISO_IR 192"])
            tag = Tag(0x00100010 if vr == "PN" else 0x00081030)
            element = convert_raw_data_element(
                RawDataElement(tag, vr, len(raw), raw, 0, False, True), encoding=encodings_for(charset)
            )
            value = element.value
            expected = [str(v) for v in value] if isinstance(value, MultiValue | list) else [str(value)]
            assert text_values(vr, raw, charset) == expected, (vr, raw, charset)


# ---------------------------------------------------------------------------------------- bad input


def _top_level_ends(data: bytes, implicit: bool) -> set[int]:
    start = 132 + 12 + struct.unpack_from("<L", data, 140)[0]
    elements = Reader(data, implicit).dataset(start, len(data))[0]
    return {start} | {element[5] for element in elements}


def _rejected(data: bytes) -> str:
    result = deidentify_raw(data, KEY)
    assert result.output is None and result.rejected, "a damaged file must be rejected, never written"
    assert result.rejected.startswith("malformed DICOM: ")
    via_bytes = deidentify_bytes(data, KEY)
    assert via_bytes.output is None and via_bytes.rejected == result.rejected
    return result.rejected


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm", "test-SR.dcm"])
def test_truncated_anywhere_inside_an_element_is_rejected(name) -> None:
    data = Path(get_testdata_file(name)).read_bytes()
    ends = _top_level_ends(data, name.endswith("implicit.dcm"))
    rng = random.Random(name)
    cuts = {rng.randrange(min(ends) + 1, len(data)) for _ in range(40)} | {len(data) - 1, len(data) - 3}
    for cut in sorted(cuts - ends):
        reason = _rejected(data[:cut])
        assert "PatientName" not in reason and "CompressedSamples" not in reason  # offsets and tags only


def _element_offset(data: bytes, tag: int) -> int:
    return data.index(struct.pack("<HH", tag >> 16, tag & 0xFFFF), 132)


@pytest.mark.timeout(60)
def test_wrong_and_huge_lengths_are_rejected() -> None:
    data = bytearray(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    for length in (0xFFFFFFF0, 0x7FFFFFFF, len(data)):  # pixel data (OW, 4-byte length) past the end
        damaged = bytearray(data)
        at = _element_offset(damaged, 0x7FE00010) + 8
        damaged[at : at + 4] = struct.pack("<L", length)
        assert "(7FE0,0010)" in _rejected(bytes(damaged))
    damaged = bytearray(data)  # a short-length element declaring more than is left of the file
    at = _element_offset(damaged, 0x00280030) + 6
    damaged[at : at + 2] = struct.pack("<H", 0xFFFE)
    _rejected(bytes(damaged))
    sr = bytearray(Path(get_testdata_file("test-SR.dcm")).read_bytes())
    at = _element_offset(sr, 0x0040A730) + 8  # the content sequence declares fewer bytes than its items
    (length,) = struct.unpack_from("<L", sr, at)
    sr[at : at + 4] = struct.pack("<L", length - 10)
    assert "past" in _rejected(bytes(sr))


def _with_trailing(data: bytes, tail: bytes) -> bytes:
    """``data`` plus extra top-level elements (tags above pixel data: the digital signatures area)."""
    return data + tail


def _undefined_sequence(tag: int, *items: bytes) -> bytes:
    return struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, b"SQ", 0, 0xFFFFFFFF) + b"".join(items)


def _undefined_item(content: bytes) -> bytes:
    return struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + content


@pytest.mark.timeout(60)
def test_items_and_sequences_that_never_close_are_rejected() -> None:
    data = Path(get_testdata_file("JPEG2000.dcm")).read_bytes()  # ends with pixel data
    text = struct.pack("<HH2sH", 0x0008, 0x0100, b"SH", 6) + b"CODE01"
    never_closed_item = _with_trailing(data, _undefined_sequence(0xFFFAFFFA, _undefined_item(text)))
    assert "never closes" in _rejected(never_closed_item)
    item_end = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    never_closed_sequence = _with_trailing(
        data, _undefined_sequence(0xFFFAFFFA, _undefined_item(text + item_end))
    )
    assert "never closes" in _rejected(never_closed_sequence)
    closed = _with_trailing(
        data,
        _undefined_sequence(0xFFFAFFFA, _undefined_item(text + item_end))
        + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0),
    )
    assert deidentify_raw(closed, KEY).output is not None  # the same bytes, closed, are fine


@pytest.mark.timeout(60)
def test_nesting_too_deep_is_rejected_not_a_crash() -> None:
    data = Path(get_testdata_file("JPEG2000.dcm")).read_bytes()
    nested = b""
    for _ in range(MAX_DEPTH * 4):
        nested = _undefined_sequence(
            0xFFFAFFFA, _undefined_item(nested + struct.pack("<HHL", 0xFFFE, 0xE00D, 0))
        )
        nested += struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    assert "nested" in _rejected(_with_trailing(data, nested))


def test_not_applicable_files_get_the_reference_result() -> None:
    for name in (
        "MR_small_bigendian.dcm",
        "image_dfl.dcm",
        "no_meta.dcm",
        "ExplVR_LitEndNoMeta.dcm",
        "rtdose_rle.dcm",
    ):
        data = Path(get_testdata_file(name)).read_bytes()
        with pytest.raises(Unsupported):
            deidentify_raw(data, KEY)
        ref, via_bytes = deidentify(data, KEY), deidentify_bytes(data, KEY)
        assert via_bytes.output == ref.output and via_bytes.report == ref.report


@pytest.mark.timeout(180)
def test_random_damage_never_crashes_and_never_differs_from_the_reference() -> None:
    """Flipped bytes, cut files and forged lengths: the fast path rejects, defers or agrees."""
    rng = random.Random(3)
    seen = set()
    for name in ("CT_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm", "test-SR.dcm", "rtplan.dcm"):
        base = Path(get_testdata_file(name)).read_bytes()
        for _ in range(40):
            damaged = bytearray(base)
            kind = rng.choice(["flip", "cut", "length"])
            if kind == "flip":
                for _ in range(rng.randint(1, 4)):
                    damaged[rng.randrange(132, min(len(damaged), 2000))] = rng.randrange(256)
            elif kind == "cut":
                damaged = damaged[: rng.randrange(132, len(damaged))]
            else:
                at = rng.randrange(132, min(len(damaged), 2000))
                damaged[at : at + 4] = rng.choice(
                    [b"\xff\xff\xff\xff", b"\xf0\xff\xff\x7f", b"\x00\x00\x01\x00"]
                )
            data = bytes(damaged)
            ref = deidentify(data, KEY)
            try:
                fast = deidentify_raw(data, KEY)
            except Unsupported:
                seen.add("reference")
                continue
            if fast.rejected:
                seen.add("rejected")
                assert fast.output is None and fast.rejected.startswith("malformed DICOM: ")
                continue
            seen.add("same")
            assert differences(ref, fast) == [], (name, kind)
    assert seen == {"reference", "rejected", "same"}


def test_markers_and_sequences_written_by_the_fast_path_read_back() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "R-42453", "SRT", "Benign"
    content = Dataset()
    content.ValueType, content.TextValue, content.ConceptCodeSequence = (
        "TEXT",
        "seen by Dr SMITHERS",
        Sequence([item]),
    )
    ds.ContentSequence = Sequence([content])
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    result = deidentify_raw(buf.getvalue(), KEY, Options(clean_structured_content=True))
    out = pydicom.dcmread(io.BytesIO(result.output))
    assert out.PatientIdentityRemoved == "YES"
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == ["113100", "113104"]
    assert out.ContentSequence[0].ConceptCodeSequence[0].CodeMeaning == "Benign"
    assert b"SMITHERS" not in result.output
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID != ds.SOPInstanceUID
