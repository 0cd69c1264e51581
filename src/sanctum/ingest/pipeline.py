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
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sanctum.deid.profile import Options
from sanctum.deid.pseudonyms import Pseudonymiser
from sanctum.ingest import metadata
from sanctum.ingest.detect import Kind, detect, unknown_reason

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from sanctum.deid.table_policy import TablePolicy

TABLE_FILE = "table.parquet"
UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_SEGMENT = re.compile(r"[^0-9A-Za-z._-]")


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
            return _dicom(settings, item)
        if kind is Kind.EDF:
            return _edf(settings, item)
        return _table(settings, item)
    except Exception as exc:  # a bug or a library crash on odd input: an error outcome, never a 500
        return WorkResult(item.index, kind, "error", [f"cannot process: {type(exc).__name__}"])


def _segment(value: object, fallback: str) -> str:
    text = _SEGMENT.sub("_", str(value or ""))[:64]
    return fallback if text in ("", ".", "..") else text


# --------------------------------------------------------------------------- DICOM


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
            return "truncated: the file ends inside the header of an attribute", ds
    sop_class = pydicom.uid.UID(str(ds.get("SOPClassUID", "")))
    image = "Rows" in ds or "Image Storage" in (sop_class.name if sop_class.is_valid else "")
    if image and not any(tag in ds for tag in PIXEL_TAGS):
        return "an image without pixel data: the file is probably truncated", ds
    return None, ds


def _dicom(settings: WorkSettings, item: WorkItem) -> WorkResult:
    # The raw-element fast path; it falls back to the pydicom reference for what it does not handle
    # and gives the same result either way (tests/test_deid_dicom_raw.py).
    from sanctum.deid.dicom_raw import deidentify_bytes

    problem, original = dicom_problem(item.data)
    if problem:
        return WorkResult(item.index, Kind.DICOM, "error", [problem])
    result = deidentify_bytes(item.data, Pseudonymiser(settings.secret), settings.options)
    actions = {f"dicom:{k}": v for k, v in result.report.actions.items()}
    if result.rejected:
        return WorkResult(item.index, Kind.DICOM, "error", [result.rejected], actions=actions)
    if result.output is None:  # the byte scan found an original value: never stored
        return WorkResult(item.index, Kind.DICOM, "quarantined", result.quarantine_reasons, actions=actions)
    row = metadata.row(result.output, original)
    path = "/".join(
        (
            "dicom",
            _segment(row["patient_id"], "unknown-patient"),
            _segment(row["study_uid"], "unknown-study"),
            _segment(row["series_uid"], "unknown-series"),
            _segment(row["instance_uid"], item.content_id[:32]) + ".dcm",
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
        metadata=row if outcome == "stored" else None,
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
