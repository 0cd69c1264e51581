"""De-identify one EDF, EDF+ or BDF(+) recording: pure, bytes in → bytes + report out.

Why rewrite the header in place instead of reading and re-writing the recording with an EDF
library: libraries rescale, round or re-pack samples and drop fields they do not know, and they
refuse files with small header faults. Here every byte of every data record is copied as it is,
except the annotation signals' texts; only the identifying header fields are replaced. The
patient gets the project pseudonym and date shift the DICOM path gives the same patient key
(``date_offset_days(patient_id(key))``), so a night's recording lines up with the same patient's
images and table rows. Afterwards the kept header text is searched for every removed value.
Header layout: EDF specification (edfplus.info/specs/edf.html), EDF+ §2.1 (edfplus.html).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from sanctum.deid.edf_annotations import TalError, scrub_block
from sanctum.deid.pseudonyms import Pseudonymiser
from sanctum.deid.scan import scan

EdfFormat = Literal["EDF", "EDF+C", "EDF+D", "BDF", "BDF+"]
EDF_VERSION = b"0       "
BDF_VERSION = b"\xffBIOSEMI"
#: The EDF+ convention for a de-identified start date (with "Startdate X" in the recording field).
ANONYMOUS_STARTDATE = "01.01.85"
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
ANNOTATION_LABELS = frozenset({"EDF Annotations", "BDF Annotations"})
#: Per-signal header fields, in file order: (name, width, numeric kind or None for text).
SIGNAL_FIELDS: tuple[tuple[str, int, str | None], ...] = (
    ("label", 16, None),
    ("transducer", 80, None),
    ("physical_dimension", 8, None),
    ("physical_minimum", 8, "float"),
    ("physical_maximum", 8, "float"),
    ("digital_minimum", 8, "int"),
    ("digital_maximum", 8, "int"),
    ("prefiltering", 80, None),
    ("samples_per_record", 8, "int"),
    ("reserved", 32, None),
)
_INT = re.compile(r"[+-]?[0-9]+")
_TIME = re.compile(r"[0-9]{2}\.[0-9]{2}\.[0-9]{2}")


class _Rejected(Exception):
    """Internal: the input cannot be de-identified; the message is safe to show (no values)."""


@dataclass
class EdfReport:
    """What was done, as counts per ``field:action`` — never any identifying value."""

    actions: Counter[str] = field(default_factory=Counter)
    scan_hits: list[str] = field(default_factory=list)

    @property
    def annotations_scrubbed(self) -> int:
        """How many annotation texts were replaced by the placeholder."""
        return self.actions["annotations:scrubbed"]


@dataclass
class EdfResult:
    """Output bytes (``None`` when rejected) and why; the format as detected from the header."""

    output: bytes | None
    rejected: str | None
    format: EdfFormat | None
    report: EdfReport
    patient_pseudonym: str | None = None


def sniff(data: bytes) -> bool:
    """Whether ``data`` starts like an EDF or BDF file (version field), whatever its name."""
    return data[:8] in (EDF_VERSION, BDF_VERSION)


def _text(raw: bytes) -> str:
    """Header bytes as text; non-ASCII bytes survive as surrogates so the scan finds them as read."""
    return raw.decode("ascii", "surrogateescape")


def _text_bytes(text: str) -> bytes:
    """The bytes a header text came from (inverse of ``_text``)."""
    return text.encode("ascii", "surrogateescape")


def _pad(text: str, width: int) -> bytes:
    """An ASCII header field padded with spaces; our own values always fit."""
    raw = text.encode("ascii")
    if len(raw) > width:  # pragma: no cover - the values written here are short
        raise ValueError("header value too long")
    return raw.ljust(width, b" ")


def _number(raw: bytes, what: str, kind: str) -> float:
    """A numeric header field, or a rejection naming the field (not its content)."""
    text = raw.decode("ascii", "replace").strip()
    try:
        if kind == "int":
            if not _INT.fullmatch(text):
                raise ValueError
            return int(text)
        value = float(text)
    except ValueError:
        raise _Rejected(f"header field '{what}' is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise _Rejected(f"header field '{what}' is not a finite number")
    return value


def _edf_date(text: str) -> dt.date | None:
    """Parse an EDF+ ``dd-MMM-yyyy`` date; ``None`` if it is not one."""
    match = re.fullmatch(r"([0-9]{2})-([A-Za-z]{3})-([0-9]{4})", text)
    if not match or match[2].upper() not in MONTHS:
        return None
    try:
        return dt.date(int(match[3]), MONTHS.index(match[2].upper()) + 1, int(match[1]))
    except ValueError:
        return None


def _format_edf_date(day: dt.date) -> str:
    return f"{day.day:02d}-{MONTHS[day.month - 1]}-{day.year:04d}"


def _header_date(text: str) -> dt.date | None:
    """Parse the 8-byte ``dd.mm.yy`` start date with the 1985 clipping rule; ``None`` if invalid."""
    match = re.fullmatch(r"([0-9]{2})\.([0-9]{2})\.([0-9]{2})", text)
    if not match:
        return None
    year = int(match[3])
    try:
        return dt.date(1900 + year if year >= 85 else 2000 + year, int(match[2]), int(match[1]))
    except ValueError:
        return None


@dataclass
class _Header:
    """The parsed main header and signal headers of one file."""

    fmt: EdfFormat
    plus: bool
    header_bytes: int
    records: int
    signals: list[dict[str, bytes]]
    samples: list[int]

    @property
    def sample_bytes(self) -> int:
        return 3 if self.fmt.startswith("BDF") else 2

    @property
    def record_size(self) -> int:
        return sum(self.samples) * self.sample_bytes


def _parse(data: bytes) -> _Header:
    """Validate the header against the specification's layout; reject what cannot be trusted."""
    if not sniff(data):
        raise _Rejected("not an EDF or BDF file: the version field is neither '0' nor 0xFF 'BIOSEMI'")
    if len(data) < 256:
        raise _Rejected("truncated header: shorter than the 256-byte main header")
    bdf = data[:8] == BDF_VERSION
    reserved = data[192:236].decode("ascii", "replace")
    prefix = "BDF+" if bdf else "EDF+"
    plus = reserved[:5] in (prefix + "C", prefix + "D")
    fmt: EdfFormat = "EDF"
    if bdf:
        fmt = "BDF+" if plus else "BDF"
    elif plus:
        fmt = "EDF+D" if reserved[4] == "D" else "EDF+C"
    ns = int(_number(data[252:256], "number of signals", "int"))
    header_bytes = int(_number(data[184:192], "number of bytes in header", "int"))
    records = int(_number(data[236:244], "number of data records", "int"))
    duration = _number(data[244:252], "duration of a data record", "float")
    if ns < 1:
        raise _Rejected("header declares no signals")
    if header_bytes != 256 * (ns + 1):
        raise _Rejected(f"header length field ({header_bytes}) does not match {ns} signals")
    if records == -1:
        raise _Rejected("number of data records is -1: the recording was not finalised")
    if records < 0 or duration < 0:
        raise _Rejected("negative number of data records or record duration")
    if len(data) < header_bytes:
        raise _Rejected("truncated header: shorter than its signal headers")
    signals: list[dict[str, bytes]] = [{} for _ in range(ns)]
    pos = 256
    for name, width, kind in SIGNAL_FIELDS:
        for signal in signals:
            signal[name] = data[pos : pos + width]
            if kind:
                _number(signal[name], name.replace("_", " "), kind)
            pos += width
    samples = [int(_number(s["samples_per_record"], "samples per record", "int")) for s in signals]
    if any(n < 1 for n in samples):
        raise _Rejected("a signal has no samples per data record")
    header = _Header(fmt, plus, header_bytes, records, signals, samples)
    need = header_bytes + records * header.record_size
    if len(data) < need:
        raise _Rejected(
            f"truncated data records: {records} records of {header.record_size} bytes "
            f"need {need} bytes, the file has {len(data)}"
        )
    return header


class _Rewrite:
    """The replacement main-header fields, with the originals they remove (for the byte scan)."""

    def __init__(self, p: Pseudonymiser, dates: str, birthdate: str, report: EdfReport) -> None:
        self.p, self.dates, self.birthdate, self.report = p, dates, birthdate, report
        self.originals: list[tuple[str, str]] = []

    def count(self, name: str, action: str) -> None:
        self.report.actions[f"{name}:{action}"] += 1

    def removed(self, name: str, value: str, action: str = "removed") -> None:
        """Count a removed value and remember it (and a spaced form of EDF+ ``_``) for the scan."""
        self.count(name, action if value and value != "X" else "absent")
        if value and value != "X":
            self.originals += [(name, value), (name, value.replace("_", " "))]

    def patient(self, raw: bytes, plus: bool, patient_key: str | None) -> tuple[str, str, int]:
        """The new 80-byte patient field, the pseudonym and the patient's date offset in days."""
        text = _text(raw).strip()
        parts = text.split() if plus else []
        code = (parts[0] if parts else "") if plus else text
        key = patient_key.strip() if patient_key and patient_key.strip() else code
        if not key or set(key.split()) == {"X"}:  # "X" (or "X X X X") is the EDF+ mark for unknown
            raise _Rejected("the file has no patient code and no patient_key was given: cannot pseudonymise")
        pseudonym = self.p.patient_id(key)
        offset = self.p.date_offset_days(pseudonym)
        self.removed("patient.code" if plus else "patient.text", code)
        self.count("patient.pseudonym", "written")
        if patient_key:
            self.originals.append(("patient_key", patient_key.strip()))
        sex = parts[1] if len(parts) > 1 and parts[1] in ("M", "F") else "X"
        self.count("patient.sex", "kept" if sex != "X" else "unknown")
        birth = "X"
        if len(parts) > 2:
            born = _edf_date(parts[2])
            if born and self.birthdate == "shift" and self.dates == "shift":
                try:
                    birth = _format_edf_date(born + dt.timedelta(days=offset))
                except OverflowError:
                    birth = "X"
            self.removed("patient.birthdate", parts[2], "shifted" if birth != "X" else "removed")
            for fmt in ("%d.%m.%y", "%d.%m.%Y", "%Y-%m-%d", "%d/%m/%Y", "%Y%m%d"):
                if born:
                    self.originals.append(("patient.birthdate", born.strftime(fmt)))
        if len(parts) > 3:
            self.removed("patient.name", parts[3])
            self.originals += [("patient.name", part) for part in re.split(r"[_,\s]+", parts[3])]
        for extra in parts[4:]:
            self.removed("patient.additional", extra)
        return f"{pseudonym} {sex} {birth} X", pseudonym, offset

    def start(self, recording: bytes, startdate: bytes, header: _Header, offset: int) -> tuple[str, str]:
        """The new recording field and 8-byte start date, shifted or anonymous."""
        text = _text(recording).strip()
        parts = text.split() if header.plus else []
        original = None
        if header.plus and parts[:1] == ["Startdate"]:
            names = ("startdate", "admincode", "technician", "equipment")
            for name, value in zip((f"recording.{n}" for n in names), parts[1:5], strict=False):
                self.removed(name, value, "replaced" if name == "recording.startdate" else "removed")
            for extra in parts[5:]:
                self.removed("recording.additional", extra)
            original = _edf_date(parts[1]) if len(parts) > 1 else None
        else:
            self.removed("recording.text", text)
        if original is None:
            original = _header_date(_text(startdate))
        if original is not None:
            for fmt in ("%d.%m.%y", "%d.%m.%Y", "%Y-%m-%d", "%Y%m%d", "%d/%m/%Y"):
                self.originals.append(("startdate", original.strftime(fmt)))
            self.originals.append(("startdate", _format_edf_date(original)))
        if self.dates == "anonymous" or original is None:
            self.count("startdate", "anonymised" if original is not None else "anonymised-unparsable")
            return "Startdate X X X X", ANONYMOUS_STARTDATE
        try:
            shifted = original + dt.timedelta(days=offset)
        except OverflowError:
            raise _Rejected("the shifted start date is out of range; use dates='anonymous'") from None
        if shifted.year < 1985 or (shifted.year > 2084 and not header.plus):
            raise _Rejected(
                "the shifted start date is outside 1985-2084, which this header cannot hold; "
                "use dates='anonymous'"
            )
        yy = "yy" if shifted.year > 2084 else f"{shifted.year % 100:02d}"  # EDF+ §2.1.3.2: year in field
        self.count("startdate", "shifted")
        return f"Startdate {_format_edf_date(shifted)} X X X", f"{shifted.day:02d}.{shifted.month:02d}.{yy}"


def _clean_signal_text(raw: bytes, report: EdfReport) -> bytes:
    """Replace bytes outside printable ASCII in a kept signal-header text field: unreadable, unsafe."""
    clean = bytes(b if 32 <= b <= 126 else 0x5F for b in raw)
    if clean != raw:
        report.actions["signal-header:non-ascii-replaced"] += 1
    return clean


def deidentify_edf(
    data: bytes,
    pseudonymiser: Pseudonymiser,
    *,
    dates: Literal["shift", "anonymous"] = "shift",
    patient_key: str | None = None,
    birthdate: Literal["remove", "shift"] = "remove",
) -> EdfResult:
    """De-identify one EDF/EDF+/BDF/BDF+ file. Never raises on bad input: returns a rejection."""
    report = EdfReport()
    fmt: EdfFormat | None = None
    stage = "reading the header"
    try:
        if dates not in ("shift", "anonymous") or birthdate not in ("remove", "shift"):
            raise _Rejected("unknown dates or birthdate option")
        header = _parse(data)
        fmt = header.fmt
        stage = "rewriting the header"
        rewrite = _Rewrite(pseudonymiser, dates, birthdate, report)
        patient, pseudonym, offset = rewrite.patient(data[8:88], header.plus, patient_key)
        recording, startdate = rewrite.start(data[88:168], data[168:176], header, offset)
        starttime = _text(data[176:184])
        if not _TIME.fullmatch(starttime):
            starttime = "00.00.00"
            report.actions["starttime:replaced"] += 1
        else:
            report.actions["starttime:kept"] += 1
        reserved = ""
        if header.plus:
            reserved = data[192:197].decode("ascii")  # EDF+C, EDF+D, BDF+C or BDF+D
        elif fmt == "BDF" and data[192:197] == b"24BIT":
            reserved = "24BIT"  # BioSemi's format marker, not text about anyone
        report.actions["reserved:" + ("kept" if _pad(reserved, 44) == data[192:236] else "cleared")] += 1
        main = (
            data[0:8]
            + _pad(patient, 80)
            + _pad(recording, 80)
            + _pad(startdate, 8)
            + _pad(starttime, 8)
            + data[184:192]
            + _pad(reserved, 44)
            + data[236:256]
        )
        signal_headers, kept_text = b"", main[8:168] + main[192:236]
        for name, _width, kind in SIGNAL_FIELDS:
            for signal in header.signals:
                raw = signal[name] if kind else _clean_signal_text(signal[name], report)
                signal_headers += raw
                kept_text += b"" if kind else b"\x00" + raw
        stage = "scrubbing annotations"
        records = _records(data, header, report)
        output = main + signal_headers + records
    except _Rejected as exc:
        return EdfResult(None, str(exc), fmt, report)
    except TalError as exc:
        return EdfResult(None, f"malformed annotation signal: {exc}", fmt, report)
    except Exception as exc:  # any other failure is a rejection, never a crash or partial output
        return EdfResult(None, f"cannot de-identify: {type(exc).__name__} while {stage}", fmt, report)
    written = main[8:168]  # our own text: an original found inside it (e.g. "Startdate X X X X") is harmless
    originals = [(n, v) for n, v in rewrite.originals if _text_bytes(v) not in written]
    report.scan_hits = scan(kept_text, originals)
    if report.scan_hits:
        reason = "original value still present in a kept header field: " + ", ".join(report.scan_hits)
        return EdfResult(None, reason, fmt, report, pseudonym)
    return EdfResult(output, None, fmt, report, pseudonym)


def _records(data: bytes, header: _Header, report: EdfReport) -> bytes:
    """The data records with annotation texts scrubbed; every other byte copied unchanged."""
    start, size = header.header_bytes, header.record_size
    end = start + header.records * size
    if len(data) > end:
        report.actions["trailing-bytes:removed"] += 1
    annotation_slices = []
    pos = 0
    for signal, samples in zip(header.signals, header.samples, strict=True):
        width = samples * header.sample_bytes
        if _text(signal["label"]).strip() in ANNOTATION_LABELS:
            annotation_slices.append((pos, pos + width))
        pos += width
    if not annotation_slices:
        return data[start:end]
    out = bytearray(data[start:end])
    for record in range(header.records):
        base = record * size
        for first, last in annotation_slices:
            try:
                block, counts = scrub_block(bytes(out[base + first : base + last]))
            except TalError as exc:
                raise TalError(f"{exc} (data record {record + 1})") from None
            out[base + first : base + last] = block
            report.actions.update(counts)
    return bytes(out)
