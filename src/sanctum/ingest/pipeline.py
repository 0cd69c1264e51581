"""One source file in, one outcome out: detect, check, de-identify, name. Runs in a worker process.

Pure like ``sanctum.deid``: bytes and settings in, a ``WorkResult`` out; no database, blob store or
network, so the same function runs in the server's process pool or on a Dask worker. It never
raises: anything unexpected becomes an ``error`` outcome naming the stage and the exception type,
never a value from the file.

Where outputs go in the version (``stored_path``) is derived from pseudonyms, never from the
source path: hospital export folders are often named after the patient.

- DICOM: ``dicom/<patient pseudonym>/<study UID>/<series UID>/<instance UID>.dcm``
- EDF/BDF: ``edf/<patient pseudonym>/<keyed content id>.edf`` (``.bdf``)
- tables: ``tables/<source path, suffix .parquet>`` (a table dataset: its one ``table.parquet``)
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from sanctum.deid.profile import Options
from sanctum.deid.pseudonyms import Pseudonymiser
from sanctum.ingest import metadata
from sanctum.ingest.detect import Kind, detect, unknown_reason

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from sanctum.deid.dicom import Result
    from sanctum.deid.dicom_raw_parse import Element
    from sanctum.deid.dicom_raw_seen import Seen
    from sanctum.deid.table_policy import TablePolicy

    #: A DICOM de-identifier: ``dicom.deidentify``'s signature.
    Deidentify = Callable[[bytes, Pseudonymiser, Options], Result]

TABLE_FILE = "table.parquet"
UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_SEGMENT = re.compile(r"[^0-9A-Za-z._-]")
_U32, _U16 = struct.Struct("<L").unpack_from, struct.Struct("<H").unpack_from
#: ``dicom_problem``'s reason for bytes left over that are too few for another attribute.
CUT_IN_HEADER = "truncated: the file ends inside the header of an attribute"


@dataclass(frozen=True)
class WorkSettings:
    """What every file of a session is processed with; ``secret`` is the project's pseudonym key."""

    secret: bytes
    options: Options
    edf_dates: Literal["shift", "anonymous"]
    policy: str | None
    table_dataset: bool
    max_table_bytes: int


@dataclass(frozen=True)
class WorkItem:
    index: int
    name: str  # the source path: a hint for the CSV reader (extension), never stored by the worker
    data: bytes
    content_id: str  # keyed HMAC of the content (never a plain hash), names EDF outputs


@dataclass
class WorkResult:
    index: int
    kind: str
    outcome: str  # stored | quarantined | error
    reasons: list[str]
    output: bytes | None = None
    stored_path: str | None = None
    actions: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None
    table: tuple[list[dict[str, object]], int] | None = None  # schema and rows, for a table dataset


class Processor:
    """``process`` bound to a session's settings; picklable, so pools and Dask can ship it."""

    __name__ = "deidentify"

    def __init__(self, settings: WorkSettings) -> None:
        self.settings = settings

    def __call__(self, item: WorkItem) -> WorkResult:
        return process(self.settings, item)


def crashed(item: WorkItem) -> WorkResult:
    """The outcome of a file whose worker died (a crashing decoder, out of memory)."""
    return WorkResult(
        item.index, Kind.UNKNOWN, "error", ["the de-identification worker crashed on this file"]
    )


def process(settings: WorkSettings, item: WorkItem) -> WorkResult:
    return _process(settings, item, _dicom)


def process_reference(settings: WorkSettings, item: WorkItem) -> WorkResult:
    """``process`` with DICOM taking the pydicom-parsing path (``dicom_reference``) every time: what
    the worker did before its single raw parse, kept as the yardstick the tests compare it with."""
    return _process(settings, item, dicom_reference)


def _process(
    settings: WorkSettings, item: WorkItem, dicom: Callable[[WorkSettings, WorkItem], WorkResult]
) -> WorkResult:
    kind = Kind.UNKNOWN
    try:
        kind = detect(item.data)
        if kind is Kind.UNKNOWN:
            return WorkResult(item.index, kind, "error", [unknown_reason(item.data)])
        if kind is not Kind.TABLE and settings.table_dataset:
            return WorkResult(
                item.index,
                kind,
                "error",
                ["this dataset holds a table; DICOM and EDF go into a files dataset"],
            )
        if kind is Kind.DICOM:
            return dicom(settings, item)
        if kind is Kind.EDF:
            return _edf(settings, item)
        return _table(settings, item)
    except Exception as exc:  # a bug or a library crash on odd input: an error outcome, never a 500
        return WorkResult(item.index, kind, "error", [f"cannot process: {type(exc).__name__}"])


def _segment(value: object, fallback: str) -> str:
    text = _SEGMENT.sub("_", str(value or ""))[:64]
    return fallback if text in ("", ".", "..") else text


# --------------------------------------------------------------------------- DICOM


def _dicom(settings: WorkSettings, item: WorkItem) -> WorkResult:
    """One raw parse does it all: de-identification, the completeness check, the metadata row.

    The raw walk (``dicom_raw.deidentify_seen``) reads every element header; a file it reads whole
    has every value as long as its header says, every undefined length closed and nothing left
    over, so of ``dicom_problem``'s checks two are left to decide on what the walk saw: how the
    file ends (``_ends_in_an_empty_header``) and whether an image has pixel data. The metadata row
    comes from the elements the walk wrote. Where it cannot decide alone, ``dicom_reference`` runs,
    as before this path existed: a file the walk does not handle (big endian, deflated, no file
    meta...) goes to the reference de-identification, and a malformed one to ``dicom_problem``
    first, whose reason was the one reported. Same outcomes either way
    (``tests/test_ingest_fast_path.py``).
    """
    from sanctum.deid.dicom import deidentify
    from sanctum.deid.dicom_raw import Unsupported, deidentify_seen

    try:
        result, seen = deidentify_seen(
            item.data, Pseudonymiser(settings.secret), settings.options, capture=metadata.CAPTURE
        )
    except Unsupported:  # what ``deidentify_bytes`` would do next: the reference
        return dicom_reference(settings, item, deidentify)
    if seen is None:  # malformed: the reference check's reason comes first, as it always did
        return dicom_reference(settings, item, lambda *_: result)
    if _ends_in_an_empty_header(seen):
        return WorkResult(item.index, Kind.DICOM, "error", [CUT_IN_HEADER])
    problem = _no_pixels(0x00280010 in seen.top, seen.sop_class, any(t in seen.top for t in PIXEL_TAGS))
    if problem:
        return WorkResult(item.index, Kind.DICOM, "error", [problem])
    return _dicom_outcome(item, result, lambda: metadata.row_seen(seen))


def _ends_in_an_empty_header(seen: Seen) -> bool:
    """``dicom_problem``'s "cut inside a header" on a file the walk read whole.

    That check counts the bytes after the last top-level value pydicom holds, and pydicom holds no
    value for a sequence of undefined length (parsed apart) nor for an empty value of a non-text VR
    (or any empty value in implicit VR, where the reader has no VR). So a whole file whose last
    element is such an empty 8-byte header, right after one whose value pydicom holds, is flagged
    as cut there. The worker keeps that outcome: the same files are stored as before.
    """
    buf, implicit = seen.buf, seen.implicit
    listed = reversed(seen.top.values())
    last, before = next(listed), next(listed, None)
    tail: list[tuple[int, bool]] = []  # (size, whether pydicom holds its value), in file order
    if before is not None:
        tail.append((before[5] - before[2], _holds_value(seen, before)))
        tail += _unlisted(buf, implicit, before[5], last[2])
    tail.append((last[5] - last[2], _holds_value(seen, last)))
    tail += _unlisted(buf, implicit, last[5], len(buf))
    (_, held_before), (size, held) = tail[-2:] if len(tail) > 1 else ((0, False), tail[-1])
    return not held and held_before and size < 12


def _holds_value(seen: Seen, element: Element) -> bool:
    """Whether pydicom's dataset holds a raw value for a listed top-level element (see above)."""
    _, vr, start, vstart, vend, end, _ = element
    if end != vend:  # undefined length: a sequence is parsed apart, pixel data is held
        return vr != "SQ"
    return vend > vstart or _empty_value_held(seen.buf, implicit=seen.implicit, start=start)


def _empty_value_held(buf: bytes, *, implicit: bool, start: int) -> bool:
    """pydicom's raw value of an empty element is None unless its header names a text VR or SQ."""
    from pydicom.dataelem import empty_value_for_VR

    vr = None if implicit else buf[start + 4 : start + 6].decode("latin-1")
    return empty_value_for_VR(vr, raw=True) is not None


def _unlisted(buf: bytes, implicit: bool, pos: int, stop: int) -> list[tuple[int, bool]]:
    """(size, value held) of the private elements the reader counted without listing between
    ``pos`` and ``stop``: all of defined length and not sequences (those are listed), and well
    formed (the walk read them)."""
    from sanctum.deid.dicom_raw_parse import LONG_VRS

    found = []
    while pos < stop:
        if implicit:
            header, length = 8, _U32(buf, pos + 4)[0]
        elif buf[pos + 4 : pos + 6].decode("latin-1") in LONG_VRS:
            header, length = 12, _U32(buf, pos + 8)[0]
        else:
            header, length = 8, _U16(buf, pos + 6)[0]
        found.append((header + length, length > 0 or _empty_value_held(buf, implicit=implicit, start=pos)))
        pos += header + length
    return found


def dicom_reference(settings: WorkSettings, item: WorkItem, deid: Deidentify | None = None) -> WorkResult:
    """The DICOM path with pydicom parses: the fallback of ``_dicom``, and its yardstick in tests.

    ``dicom_problem`` parses the original, ``deid`` (default ``deidentify_bytes``) de-identifies it,
    ``metadata.row`` parses the output.
    """
    from sanctum.deid.dicom_raw import deidentify_bytes

    problem, original = dicom_problem(item.data)
    if problem:
        return WorkResult(item.index, Kind.DICOM, "error", [problem])
    result = (deid or deidentify_bytes)(item.data, Pseudonymiser(settings.secret), settings.options)
    return _dicom_outcome(item, result, lambda: metadata.row(result.output or b"", original))


def dicom_problem(data: bytes) -> tuple[str | None, Dataset | None]:
    """Why ``data`` is not a complete DICOM file (None if it looks complete), and the parsed dataset.

    pydicom reads a truncated file without complaint, returning whatever it got; a truncated file
    must not be stored as if it were whole. Checked, in one pass over the raw attributes: every
    top-level value is as long as its header says; an undefined-length value (encapsulated pixel
    data, a sequence) reached its delimiter; no bytes are left over that are too few for another
    attribute (a cut inside a header, which pydicom takes for the end); an image has pixel data.
    """
    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        except Exception as exc:
            return f"cannot be read as DICOM ({type(exc).__name__})", None
    if any("before delimiter" in str(w.message) for w in caught):
        return "truncated: the file ends inside an undefined-length value", ds
    last = None
    for tag in list(ds.keys()):  # by tag: iterating a Dataset would convert every value
        raw = ds.get_item(tag)
        if not isinstance(raw, RawDataElement) or raw.value is None:
            continue
        if raw.length != UNDEFINED_LENGTH and len(raw.value) < raw.length:
            return f"truncated: attribute {pydicom.datadict.keyword_for_tag(tag) or tag} ends early", ds
        if raw.value_tell is not None and (last is None or raw.value_tell > last.value_tell):
            last = raw
    meta = getattr(ds, "file_meta", None)
    deflated = meta is not None and meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
    if last is not None and not deflated:  # (deflated offsets count inflated bytes)
        extra = 8 if last.length == UNDEFINED_LENGTH else 0  # the sequence delimiter
        left = len(data) - (last.value_tell + len(last.value) + extra)
        if left < 0 or 0 < left < 12:
            return CUT_IN_HEADER, ds
    sop_class = str(ds.get("SOPClassUID", ""))
    return _no_pixels("Rows" in ds, sop_class, any(tag in ds for tag in PIXEL_TAGS)), ds


@lru_cache(maxsize=256)
def _image_class(sop_class: str) -> bool:
    import pydicom

    uid = pydicom.uid.UID(sop_class)
    return "Image Storage" in (uid.name if uid.is_valid else "")


def _no_pixels(has_rows: bool, sop_class: str, has_pixels: bool) -> str | None:
    """An image (it has Rows, or an image SOP Class) without pixel data: probably cut short."""
    if (has_rows or _image_class(sop_class)) and not has_pixels:
        return "an image without pixel data: the file is probably truncated"
    return None


def _dicom_outcome(item: WorkItem, result: Result, row: Callable[[], dict[str, Any]]) -> WorkResult:
    """The work result of a de-identified file; ``row`` gives its metadata row (read only if written)."""
    actions = {f"dicom:{k}": v for k, v in result.report.actions.items()}
    if result.rejected:
        return WorkResult(item.index, Kind.DICOM, "error", [result.rejected], actions=actions)
    if result.output is None:  # the byte scan found an original value: never stored
        return WorkResult(item.index, Kind.DICOM, "quarantined", result.quarantine_reasons, actions=actions)
    values = row()
    path = "/".join(
        (
            "dicom",
            _segment(values["patient_id"], "unknown-patient"),
            _segment(values["study_uid"], "unknown-study"),
            _segment(values["series_uid"], "unknown-series"),
            _segment(values["instance_uid"], item.content_id[:32]) + ".dcm",
        )
    )
    outcome = "quarantined" if result.quarantine_reasons else "stored"
    return WorkResult(
        item.index,
        Kind.DICOM,
        outcome,
        result.quarantine_reasons,
        output=result.output,
        stored_path=path,
        actions=actions,
        metadata=values if outcome == "stored" else None,
    )


# --------------------------------------------------------------------------- EDF


def _edf(settings: WorkSettings, item: WorkItem) -> WorkResult:
    from sanctum.deid.edf import deidentify_edf

    result = deidentify_edf(item.data, Pseudonymiser(settings.secret), dates=settings.edf_dates)
    actions = {f"edf:{k}": v for k, v in result.report.actions.items()}
    if result.output is None:
        outcome = "quarantined" if result.report.scan_hits else "error"
        return WorkResult(item.index, Kind.EDF, outcome, [result.rejected or "rejected"], actions=actions)
    suffix = "bdf" if (result.format or "").startswith("BDF") else "edf"
    path = f"edf/{_segment(result.patient_pseudonym, 'unknown-patient')}/{item.content_id[:32]}.{suffix}"
    return WorkResult(
        item.index, Kind.EDF, "stored", [], output=result.output, stored_path=path, actions=actions
    )


# --------------------------------------------------------------------------- tables


def text_columns(policy: TablePolicy) -> set[str]:
    """Columns a CSV must read as text, not as inferred numbers: IDs keep their leading zeros."""
    names = {policy.patient_column} if policy.patient_column else set()
    for name, action in policy.columns.items():
        textual = action.action in ("pseudonymise", "mask") or (
            action.action == "generalise" and (action.prefix is not None or action.hierarchy_csv is not None)
        )
        if textual:
            names.add(name)
    return names


def _table(settings: WorkSettings, item: WorkItem) -> WorkResult:
    from sanctum.datasets import paths, tables
    from sanctum.deid.table_policy import load_policy
    from sanctum.deid.tabular import apply_ingest
    from sanctum.errors import InvalidInput

    if settings.policy is None:
        reason = "a table needs the dataset's column policy and none is set (give one with --policy)"
        return WorkResult(item.index, Kind.TABLE, "error", [reason])
    try:
        policy = load_policy(settings.policy)
        table = tables.read_table_upload(
            item.data, item.name, max_bytes=settings.max_table_bytes, text_columns=text_columns(policy)
        )
        stored, report = apply_ingest(table, policy, Pseudonymiser(settings.secret))
    except InvalidInput as exc:  # TableError, TabularError, PolicyError: messages name no value
        return WorkResult(item.index, Kind.TABLE, "error", [exc.message])
    actions = {f"table:{name}:{c.action}": c.changed for name, c in report.columns.items()}
    if settings.table_dataset:
        path = TABLE_FILE
    else:
        stem = item.name.rsplit(".", 1)[0] if "." in item.name.rsplit("/", 1)[-1] else item.name
        try:
            path = paths.file_path(f"tables/{stem}.parquet")
        except InvalidInput:
            return WorkResult(
                item.index, Kind.TABLE, "error", ["the path is too long to store the table under"]
            )
    return WorkResult(
        item.index,
        Kind.TABLE,
        "stored",
        [],
        output=tables.to_parquet_bytes(stored),
        stored_path=path,
        actions=actions,
        table=(tables.schema_json(stored), stored.num_rows),
    )
