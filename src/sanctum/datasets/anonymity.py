"""The anonymity report stored with every table version: computed once, at commit, over the stored table.

Why at commit and in the commit's transaction: a version is immutable, so its report never goes
stale, and a version and its report become visible together or not at all (a crash in between
leaves neither). Why stored: the report holds counts and ratios only (``sanctum.deid.metrics``), so
every member who may see the dataset can see it on the dataset page and over the API without
decrypting anything, which the on-demand owner page cannot offer.

Which columns: the dataset's column policy (``TablePolicy.quasi_identifiers``/``sensitive``, and its
``k_threshold``, else ``DEFAULT_K``). A table without declared quasi-identifiers gets no report.
The DICOM metadata table (``<dataset>-metadata``, written by the ingest) has no policy; it gets the
fixed set ``METADATA_QUASI_IDENTIFIERS`` over one record per patient (see ``metadata_records``).

Fail closed: when a report is due but cannot be computed (a declared column is missing from the
table, the engine fails) the commit is refused and the version stays a draft. A version that
should carry a report never appears without one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from sanctum.db.models import Base, Dataset, DatasetVersion, VersionFile
from sanctum.db.types import UTCDateTime, utcnow
from sanctum.errors import InvalidInput, SanctumError

if TYPE_CHECKING:
    import pyarrow as pa

    from sanctum.datasets.catalog import DatasetRef
    from sanctum.datasets.keyring import Keyring
    from sanctum.projects.service import ProjectContext
    from sanctum.store import BlobStore

__all__ = [
    "DEFAULT_K",
    "METADATA_QUASI_IDENTIFIERS",
    "AnonymityReportFailed",
    "ReportColumns",
    "VersionAnonymity",
    "columns_for",
    "load",
    "metadata_records",
    "on_commit",
    "record",
]

log = logging.getLogger("sanctum.datasets")

#: The threshold below which a class counts as small when the policy sets none (a common practice
#: value; publication rules that ask for 10 or 11 set ``k_threshold`` in the policy).
DEFAULT_K = 5
#: The DICOM metadata table's quasi-identifiers: what someone who knows a patient had a scan could
#: know from elsewhere (the kind of scan, the body part, the scanner's vendor, roughly when).
#: ``study_year`` is the year of the stored (per-patient shifted) ``study_date``. Pseudonymised ids
#: are not QIs (they link nothing outside the project); image size and frame count describe the
#: protocol, not the person. docs/anonymity-report.md gives the reasons to the data owner.
METADATA_QUASI_IDENTIFIERS = ("modality", "body_part", "manufacturer", "study_year")
_METADATA_PERSON = ("patient_id", "study_uid", "path")  # who a row is about, first non-null wins

Source = Literal["policy", "dicom_metadata"]
Unit = Literal["record", "patient"]


class VersionAnonymity(Base):
    """One table version's anonymity report: counts and ratios only, never a value of the table."""

    __tablename__ = "dataset_version_anonymity"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(16))  # policy | dicom_metadata
    unit: Mapped[str] = mapped_column(String(16))  # record | patient: what one row of the report counts
    k_threshold: Mapped[int] = mapped_column(Integer)
    quasi_identifiers: Mapped[list[str]] = mapped_column(JSON)
    sensitive: Mapped[list[str]] = mapped_column(JSON)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)  # AnonymityReport.to_dict()
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AnonymityReportFailed(InvalidInput):
    """The version's report is due but cannot be computed from this table: the commit is refused."""

    code = "anonymity_report_failed"


class AnonymityEngineFailed(SanctumError):
    """The report engine itself failed (memory, a DuckDB error): the commit is refused, retry later."""

    status = 500
    code = "anonymity_report_failed"


@dataclass(frozen=True)
class ReportColumns:
    """What a version's report is computed over, and why (``source``)."""

    source: Source
    quasi_identifiers: tuple[str, ...]
    sensitive: tuple[str, ...]
    k_threshold: int

    @property
    def unit(self) -> Unit:
        return "patient" if self.source == "dicom_metadata" else "record"

    @property
    def stored_columns(self) -> tuple[str, ...]:
        """The stored table's columns the report reads."""
        if self.source == "dicom_metadata":
            return (*_METADATA_PERSON, "modality", "body_part", "manufacturer", "study_date")
        return (*self.quasi_identifiers, *self.sensitive)


def is_metadata_table(dataset: Dataset, column_names: list[str]) -> bool:
    """The ingest's ``<dataset>-metadata`` table: its name and every column of its schema."""
    from sanctum.ingest.metadata import METADATA_SUFFIX, SCHEMA  # ingest builds on datasets

    return dataset.name.endswith(METADATA_SUFFIX) and set(SCHEMA.names) <= set(column_names)


def columns_for(session: Session, dataset: Dataset, column_names: list[str]) -> ReportColumns | None:
    """The columns a version of ``dataset`` is reported over, or None when it gets no report.

    The column policy wins when it declares quasi-identifiers, even on a metadata table.
    """
    from sanctum.datasets.querying import table_policy

    policy = table_policy(session, dataset.id)
    if policy is not None and policy.quasi_identifiers:
        return ReportColumns(
            "policy",
            tuple(policy.quasi_identifiers),
            tuple(policy.sensitive),
            policy.k_threshold or DEFAULT_K,
        )
    if is_metadata_table(dataset, column_names):
        return ReportColumns("dicom_metadata", METADATA_QUASI_IDENTIFIERS, (), DEFAULT_K)
    return None


def metadata_records(table: pa.Table) -> pa.Table:
    """One record per patient and combination of the metadata QIs, with the patient left out.

    Why not one record per row: the metadata table has a row per image, so one 200-slice CT would
    form a class of 200 and hide that it is a single person. After this, a class's size is the
    number of distinct patients sharing that combination, which is what k should mean here. A row
    without a patient pseudonym stands for its study (or, without one, for itself).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    person = pc.coalesce(*(table[c].cast(pa.string()) for c in _METADATA_PERSON))
    records = pa.table(
        {
            "person": person,
            "modality": table["modality"],
            "body_part": table["body_part"],
            "manufacturer": table["manufacturer"],
            "study_year": pc.year(table["study_date"]),
        }
    )
    distinct = records.group_by(records.column_names, use_threads=False).aggregate([])
    return distinct.drop_columns(["person"]).select(list(METADATA_QUASI_IDENTIFIERS))


def record(
    session: Session, version: DatasetVersion, table: pa.Table, columns: ReportColumns
) -> VersionAnonymity:
    """Compute the report of ``table`` (the version's stored table) and store it with the version.

    Raises ValueError for columns the table lacks (the metrics module names the column, never a
    value) and whatever the engine raises; ``on_commit`` turns both into a refused commit.
    """
    from sanctum.deid.metrics import anonymity_report

    data = metadata_records(table) if columns.source == "dicom_metadata" else table
    report = anonymity_report(
        data, columns.quasi_identifiers, columns.sensitive, k_threshold=columns.k_threshold
    )
    row = session.get(VersionAnonymity, version.id) or VersionAnonymity(version_id=version.id)
    row.source, row.unit, row.k_threshold = columns.source, columns.unit, columns.k_threshold
    row.quasi_identifiers, row.sensitive = list(columns.quasi_identifiers), list(columns.sensitive)
    row.report, row.computed_at = report.to_dict(), utcnow()
    session.add(row)
    session.flush()
    return row


def load(session: Session, version: DatasetVersion) -> VersionAnonymity | None:
    """The stored report of a version, or None (no quasi-identifiers, or committed before reports)."""
    return session.get(VersionAnonymity, version.id)


def _read(store: BlobStore, blob_id: str, key: bytes, wanted: tuple[str, ...]) -> pa.Table:
    """Only the columns the report needs, from the stored (encrypted) Parquet blob."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = b"".join(store.open_range(blob_id, key))
    return pq.read_table(pa.BufferReader(data), columns=list(dict.fromkeys(wanted)))


def on_commit(
    session: Session,
    ctx: ProjectContext,
    ref: DatasetRef,
    version: DatasetVersion,
    entries: list[VersionFile],
    keyring: Keyring | None,
    store: BlobStore | None,
) -> VersionAnonymity | None:
    """Store the report of a table version being committed, in the commit's transaction.

    Called by ``catalog.commit`` for every table dataset. Returns None when the table gets no
    report; raises (so the commit is refused) when a report is due and cannot be computed.
    """
    if keyring is None or store is None:  # a caller that cannot read the table must not commit one
        raise RuntimeError("committing a table version needs the keyring and the store")
    names = [str(c["name"]) for c in version.table_schema or []]
    columns = columns_for(session, ref.dataset, names)
    if columns is None:
        return None
    missing = [c for c in columns.stored_columns if c not in names]
    if missing:  # only a policy's columns can be missing: a metadata table is recognised by its own
        raise AnonymityReportFailed(
            f"the table has no column {missing[0]!r}, which the dataset's column policy declares for "
            "the anonymity report; the version was not committed (fix the table or the policy, or "
            "discard the draft)"
        )
    if len(entries) != 1:
        raise AnonymityReportFailed(f"a table version holds one table, this one {len(entries)} files")
    key = keyring.dataset_key(session, ref.dataset)
    try:
        row = record(session, version, _read(store, entries[0].blob_id, key, columns.stored_columns), columns)
    except Exception as exc:
        if _engine_error(exc):  # first: Arrow's errors are ValueErrors too, and may quote a cell
            log.error("anonymity report of %s@%s failed: %s", ref.address, version.number, type(exc).__name__)
            raise AnonymityEngineFailed(
                f"the anonymity report could not be computed ({type(exc).__name__}); the version was "
                "not committed: try again, or ask an administrator (the server's memory may be too small)"
            ) from None
        if isinstance(exc, ValueError | TypeError):  # sanctum.deid.metrics: names columns, never values
            raise AnonymityReportFailed(
                f"the anonymity report cannot be computed: {exc}; the version was not committed"
            ) from None
        raise
    ctx.record(
        session,
        "dataset.version.anonymity",
        target=f"{ref.address}@{version.number}",
        details={
            "source": row.source,
            "quasi_identifiers": row.quasi_identifiers,
            "sensitive": row.sensitive,
            "k_threshold": row.k_threshold,
            "k": row.report["k"],
            "rows": row.report["rows"],
        },
    )
    return row


def _engine_error(exc: BaseException) -> bool:
    """DuckDB's and Arrow's own errors, and running out of memory. Their messages may quote a cell,
    so only the error's type is logged and told to the client."""
    import duckdb
    import pyarrow as pa

    return isinstance(exc, duckdb.Error | pa.ArrowException | MemoryError)
