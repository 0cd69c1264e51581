"""Table datasets: turn an uploaded CSV or Parquet file into a checked Arrow table, store it as
deterministic Parquet, and name it for SQL.

Pure functions, no I/O: the dataset service decrypts and encrypts around them. Every rejection
is a ``TableError`` with a message a researcher can act on, raised before anything is stored, so a
bad upload never leaves a half-written version behind. Messages never quote cell values: an upload
error may end up in a log, and the cells are the sensitive part.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Collection
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sanctum import names
from sanctum.errors import InvalidInput

__all__ = [
    "DATASET_NAME",
    "TableError",
    "from_parquet_bytes",
    "read_table_upload",
    "schema_json",
    "sql_name",
    "to_parquet_bytes",
]

DEFAULT_MAX_BYTES = 1 << 30
PARQUET_MAGIC = b"PAR1"
# No "--": a local table is "a_b" and a shared one "<project>__<dataset>", so a dataset name with a
# double hyphen could collide with a shared table's name. No leading/trailing hyphen, same reason.
DATASET_NAME = names.DATASET_NAME
PROJECT_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
NULL_VALUES = ["", "NA", "N/A", "NULL", "null", "NaN", "nan"]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DELIMITERS = (",", "\t", ";", "|")
_BINARY_HINTS = {
    b"PK\x03\x04": "a ZIP archive (an Excel .xlsx file is one): export the sheet as CSV",
    b"\x1f\x8b": "gzip-compressed: upload the uncompressed CSV",
    b"\xd0\xcf\x11\xe0": "an old Excel/Office file: export the sheet as CSV",
}


class TableError(InvalidInput, ValueError):
    """An upload that cannot become a table; the API answers 422 with the message."""

    code = "invalid_table"


def read_table_upload(
    data: bytes | BinaryIO,
    filename: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_rows: int | None = None,
    text_columns: Collection[str] = (),
) -> pa.Table:
    """Parse an upload as Parquet (by its PAR1 magic) or CSV/TSV (by extension, else by sniffing).

    The header row is required and names the columns; types are inferred by pyarrow over the whole
    file, so a column is never typed from its first rows and then fails further down. CSV columns
    named in ``text_columns`` are read as text, never inferred: an ID "00123" stays "00123".
    """
    raw = data if isinstance(data, bytes | bytearray | memoryview) else data.read(max_bytes + 1)
    raw = bytes(raw)
    if len(raw) > max_bytes:
        raise TableError(f"file is larger than the limit of {max_bytes} bytes")
    if not raw.strip():
        raise TableError("file is empty")
    table = _read_parquet(raw) if raw[:4] == PARQUET_MAGIC else _read_csv(raw, filename, text_columns)
    if max_rows is not None and table.num_rows > max_rows:
        raise TableError(f"table has {table.num_rows} rows, more than the limit of {max_rows}")
    return _normalise(table)


def _read_parquet(raw: bytes) -> pa.Table:
    try:
        return pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise TableError(f"not a readable Parquet file: {exc}") from None


def _read_csv(raw: bytes, filename: str, text_columns: Collection[str] = ()) -> pa.Table:
    lower = filename.lower()
    is_csv_name = lower.endswith((".csv", ".tsv", ".txt"))
    for magic, hint in _BINARY_HINTS.items():
        if raw.startswith(magic):
            raise TableError(f"not a CSV or Parquet file: it is {hint}")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise TableError("file is UTF-16 text: save it as UTF-8 CSV")
    bad = _first_invalid_utf8(raw)
    if bad is not None:
        if is_csv_name:
            raise TableError(
                f"file is not UTF-8 text (invalid byte at offset {bad}); save it as UTF-8 CSV "
                "(Excel: 'CSV UTF-8'), other encodings such as Latin-1 are not accepted"
            )
        raise TableError("not a CSV or Parquet file (neither UTF-8 text nor Parquet)")
    if b"\x00" in raw:
        raise TableError("not a CSV or Parquet file (it contains NUL bytes)")
    raw = raw.removeprefix(codecs.BOM_UTF8)
    delimiter = "\t" if lower.endswith(".tsv") else _sniff_delimiter(raw)
    first_bad: list[tuple[int | None, int, int]] = []

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        first_bad.append((row.number, row.expected_columns, row.actual_columns))
        return "error"

    try:
        return pacsv.read_csv(
            pa.BufferReader(raw),
            # One block over the whole file: type inference then sees every row. Single-threaded so
            # the invalid-row handler knows line numbers.
            read_options=pacsv.ReadOptions(use_threads=False, block_size=min(len(raw) + 1, 2**31 - 1)),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid_row
            ),
            convert_options=pacsv.ConvertOptions(
                null_values=NULL_VALUES,
                strings_can_be_null=True,
                column_types=dict.fromkeys(text_columns, pa.string()),
            ),
        )
    except (pa.ArrowException, ValueError) as exc:
        if first_bad:
            line, expected, actual = first_bad[0]
            where = f"line {line}" if line is not None else "a row"
            raise TableError(
                f"{where} has {actual} field(s) but the header has {expected}: every row needs the same "
                "number of fields (check for an unquoted delimiter or a missing value)"
            ) from None
        message = str(exc).split(":", 1)[0] if "CSV conversion error" in str(exc) else str(exc)
        raise TableError(f"not a readable CSV file: {message}") from None


def _first_invalid_utf8(raw: bytes) -> int | None:
    """Offset of the first byte that is not UTF-8, or None; checked in chunks to bound memory."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    chunk = 1 << 20
    for start in range(0, len(raw), chunk):
        try:
            decoder.decode(raw[start : start + chunk], final=start + chunk >= len(raw))
        except UnicodeDecodeError as exc:
            return start + exc.start
    return None


def _sniff_delimiter(raw: bytes) -> str:
    """The candidate occurring most often in the header line; a comma when the header has none."""
    header = raw.split(b"\n", 1)[0].decode("utf-8")
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _normalise(table: pa.Table) -> pa.Table:
    """Check column names, type all-empty columns as text, and drop file metadata.

    Metadata is dropped because an uploaded Parquet file's key/value metadata (pandas index, the
    writing tool, free text) is not part of the table and could itself hold identifying text.
    """
    names = table.column_names
    if not names:
        raise TableError("table has no columns (a header row naming the columns is required)")
    seen: set[str] = set()
    for index, name in enumerate(names, start=1):
        if not name.strip():
            raise TableError(f"column {index} has an empty name; every column needs a header")
        if _CONTROL.search(name):
            raise TableError(f"column {index} name contains control characters")
        if len(name) > 255:
            raise TableError(f"column {index} name is longer than 255 characters")
        if name.lower() in seen:
            raise TableError(f"duplicate column name {name!r} (names are compared case-insensitively)")
        seen.add(name.lower())
    fields = [
        pa.field(f.name, pa.string() if pa.types.is_null(f.type) else f.type, nullable=f.nullable)
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def to_parquet_bytes(table: pa.Table) -> bytes:
    """Parquet with fixed writer options, so one table gives the same bytes (for a given pyarrow):
    content hashes of versions are then stable."""
    sink = io.BytesIO()
    pq.write_table(
        table.replace_schema_metadata(None).combine_chunks(),
        sink,
        compression="zstd",
        compression_level=3,
        use_dictionary=True,
        write_statistics=True,
        row_group_size=128 * 1024,
        version="2.6",
        data_page_version="1.0",
        store_schema=True,
        write_page_index=False,
    )
    return sink.getvalue()


def from_parquet_bytes(data: bytes) -> pa.Table:
    """Read a table stored by ``to_parquet_bytes``; a damaged blob is a TableError, not a crash."""
    return _read_parquet(bytes(data))


def schema_json(table: pa.Table | pa.Schema) -> list[dict[str, object]]:
    """Columns as shown to people and returned by the API: name, Arrow type, nullable."""
    schema = table.schema if isinstance(table, pa.Table) else table
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def sql_name(dataset_name: str, shared_from_project: str | None = None) -> str:
    """The identifier a table has in SQL: "clinical-visits" → clinical_visits, and a table shared in
    from project "cardio" → cardio__clinical_visits. Only [a-z0-9_] comes out, and the mapping is
    one-to-one (see DATASET_NAME); callers still always double-quote it."""
    if not DATASET_NAME.fullmatch(dataset_name):
        raise TableError(
            f"invalid table dataset name {dataset_name!r}: use lowercase letters, digits and single hyphens"
        )
    name = dataset_name.replace("-", "_")
    if shared_from_project is None:
        return name
    if not PROJECT_NAME.fullmatch(shared_from_project):
        raise TableError(f"invalid project name {shared_from_project!r}")
    return f"{shared_from_project.replace('-', '_')}__{name}"
