"""Disclosure checks on one output table (CSV or Parquet), vectorised with Arrow compute.

What is checked, and why:

- **Row limit.** Outputs leave as aggregates; a table with more rows than the project allows looks
  like row-level data.
- **Identifier-like columns.** A column named like an identifier (the project's declared ones, or
  names, record numbers, contact details, UIDs), a date of birth (``dob``, ``*birth*``), or a text
  column whose values mostly look like pseudonyms (Sanctum's ``P…`` patient pseudonyms, DICOM
  UIDs, hex digests, UUIDs): linking rows to people is what must not leave.
- **Minimum cell count** (ACRO's threshold rule, default 10). A column named like a count (``n``,
  ``count``, ``freq``…) or, in a cross-tabulation (text label columns that are unique per row, all
  other columns non-negative integers), every number is a cell count: a cell above zero and below
  the threshold fails; zeros are flagged for review (a zero can disclose as much as a one).

Messages name columns and counts, never cell values: check results are shown to people and kept.
"""

from __future__ import annotations

import codecs
import random
import re
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sanctum.airlock.checks import Finding
from sanctum.airlock.rules import ExportRules, normalise_name
from sanctum.datasets import tables

COUNT_TOKENS = frozenset({"n", "count", "counts", "freq", "frequency", "num", "cases", "obs", "nobs"})
# Sanctum patient pseudonyms, DICOM UUID-derived UIDs (2.25.<n>), other dotted numeric UIDs of four
# or more parts (DICOM, OIDs, IP addresses), hex digests, UUIDs.
PSEUDONYM = (
    r"^(?:P[A-Z2-7]{19}|2\.25\.[0-9]{10,}|[0-9]+(?:\.[0-9]+){3,}|[0-9a-fA-F]{16,}|"
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)
PSEUDONYM_SHARE = 0.5  # a text column is identifying when at least this share of its values match
SAMPLE, SAMPLE_MARGIN = 4096, 0.1
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")


@dataclass
class TableReport:
    findings: list[Finding] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: int = 0


def read_table(data: bytes, name: str) -> pa.Table:
    """The table in an output file, read as fast as pandas reads it where that is safe.

    CSV without a double quote cannot hold a line break inside a value, so its lines are split in
    parallel blocks; anything else, or a file whose later blocks do not fit the types inferred from
    the first, or with repeated column names, goes through the dataset upload's careful reader
    (whole-file type inference, quoted line breaks, a message naming the bad line). Raises
    ``tables.TableError``.
    """
    # (``isspace`` stops at the first other byte; ``strip`` would copy the whole file)
    if data[:4] == tables.PARQUET_MAGIC or not data or data.isspace() or b"\x00" in data[:4096]:
        return tables.read_table_upload(data, name, max_bytes=len(data) + 1)
    buffer = pa.py_buffer(data)
    if data.startswith(codecs.BOM_UTF8):
        buffer = buffer.slice(len(codecs.BOM_UTF8))
    delimiter = "\t" if name.lower().endswith(".tsv") else tables._sniff_delimiter(data[:65536])
    try:
        table = pacsv.read_csv(
            pa.BufferReader(buffer),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=b'"' in data),
            convert_options=pacsv.ConvertOptions(null_values=tables.NULL_VALUES, strings_can_be_null=True),
        )
    except (pa.ArrowException, ValueError, UnicodeDecodeError):
        table = None
    names = [] if table is None else [n.lower() for n in table.column_names]
    if table is None or len(set(names)) != len(names) or any(not n.strip() for n in names):
        return tables.read_table_upload(data, name, max_bytes=len(data) + 1)
    return table


def tokens(name: str) -> list[str]:
    """``dateOfBirth`` → [date, of, birth]; ``n_patients`` → [n, patients]."""
    return [t for t in _SPLIT.split(_CAMEL.sub(r"\1_\2", name).lower()) if t]


def _finding(rule: str, verdict: str, message: str) -> Finding:
    return {"rule": rule, "verdict": verdict, "message": message}


def _is_text(type_: pa.DataType) -> bool:
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _is_number(type_: pa.DataType) -> bool:
    return pa.types.is_integer(type_) or pa.types.is_floating(type_)


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column


def _count(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)


def identifier_findings(table: pa.Table, rules: ExportRules) -> list[Finding]:
    found = []
    for name in table.column_names:
        words = tokens(name)
        if normalise_name(name) in rules.identifier_columns:
            found.append(_finding("identifier", "fail", f"column {name!r} is named like an identifier"))
        elif any(w == "dob" or "birth" in w for w in words):
            found.append(_finding("identifier", "fail", f"column {name!r} looks like a date of birth"))
        elif _is_text(table.schema.field(name).type):
            share = pseudonym_share(_as_text(table.column(name)))
            if share is not None and share >= PSEUDONYM_SHARE:
                found.append(
                    _finding(
                        "identifier",
                        "fail",
                        f"column {name!r}: {share:.0%} of its values look like pseudonyms or identifiers "
                        "(patient pseudonyms, UIDs, hashes, UUIDs)",
                    )
                )
    return found


def _share(column: pa.ChunkedArray | pa.Array) -> float | None:
    present = len(column) - column.null_count
    if not present:
        return None
    return _count(pc.match_substring_regex(column, PSEUDONYM)) / present


def pseudonym_share(column: pa.ChunkedArray) -> float | None:
    """The share of a text column's values that look like pseudonyms (None: all null).

    Why a sample first: a regular expression over a million values costs more than reading them.
    A uniform random sample of ``SAMPLE`` values (from the system's random source, so a file cannot
    be shaped to dodge it) decides when it is clearly above or below the threshold — wrong with a
    probability below e^-80 (Hoeffding) — and only a column whose sample lands near the threshold
    is matched in full.
    """
    if len(column) <= 4 * SAMPLE:
        return _share(column)
    rows = random.SystemRandom().sample(range(len(column)), SAMPLE)
    sampled = _share(column.take(pa.array(rows)))
    if sampled is not None and abs(sampled - PSEUDONYM_SHARE) >= SAMPLE_MARGIN:
        return sampled
    return _share(column)


def _cross_tab_counts(table: pa.Table) -> list[str]:
    """The count columns of a cross-tabulation: unique text labels, non-negative integer cells."""
    labels = [n for n in table.column_names if _is_text(table.schema.field(n).type)]
    numbers = [n for n in table.column_names if n not in labels]
    if not labels or not numbers or table.num_rows == 0:
        return []
    if not all(pa.types.is_integer(table.schema.field(n).type) for n in numbers):
        return []
    if any(_count(pc.less(table.column(n), 0)) for n in numbers):
        return []
    keyed = table.select(labels).combine_chunks()
    keyed = pa.table({n: _as_text(keyed.column(n)) for n in labels})
    if keyed.group_by(labels).aggregate([]).num_rows != table.num_rows:
        return []  # repeated labels: rows of data, not the cells of a table
    return numbers


def count_columns(table: pa.Table) -> list[str]:
    numeric = [n for n in table.column_names if _is_number(table.schema.field(n).type)]
    named = [n for n in numeric if any(t in COUNT_TOKENS for t in tokens(n))]
    return named or _cross_tab_counts(table)


def cell_count_findings(table: pa.Table, rules: ExportRules) -> list[Finding]:
    columns = count_columns(table)
    if not columns:
        return [_finding("min_cell_count", "pass", "no frequency counts recognised in this table")]
    found = []
    threshold = rules.min_cell_count
    for name in columns:
        column = table.column(name)
        small = _count(pc.and_(pc.greater(column, 0), pc.less(column, threshold)))
        zeros = _count(pc.equal(column, 0))
        if small:
            found.append(
                _finding(
                    "min_cell_count",
                    "fail",
                    f"column {name!r}: {small} cell(s) below the minimum count of {threshold}",
                )
            )
        if zeros and rules.zeros_need_review:
            found.append(
                _finding(
                    "zeros",
                    "review",
                    f"column {name!r}: {zeros} zero cell(s); check whether each zero discloses something",
                )
            )
    if not found:
        listed = ", ".join(repr(n) for n in columns)
        found.append(
            _finding("min_cell_count", "pass", f"count cells in {listed} are all 0 or at least {threshold}")
        )
    return found


def check_table(table: pa.Table, rules: ExportRules) -> TableReport:
    report = TableReport(columns=list(table.column_names), rows=table.num_rows)
    if table.num_rows > rules.max_rows:
        report.findings.append(
            _finding(
                "row_limit",
                "fail",
                f"{table.num_rows} rows, more than the limit of {rules.max_rows}: row-level data does not "
                "leave; export aggregates",
            )
        )
    report.findings += identifier_findings(table, rules)
    report.findings += cell_count_findings(table, rules)
    return report
