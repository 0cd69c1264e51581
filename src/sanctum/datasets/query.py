"""The SQL sandbox: one read-only statement over a project's tables, and nothing else.

Each query gets a fresh in-memory DuckDB database, locked down before any table is registered:
no file system, no network, no extensions, no Python replacement scans, bounded memory and
threads, no spilling to disk, then the configuration is locked so SQL cannot undo any of it.
Only the Arrow tables handed in are visible, so another project's data is out of reach by
construction. The statement is classified by DuckDB's own parser and anything but a read query is
refused before it runs; the lock-down is the second wall behind that check.

Results are JSON-safe: dates, times and timestamps as ISO 8601 text ("infinity" for DuckDB's
infinite values), DECIMAL as exact strings (JSON numbers would round them), whole numbers from
HUGEINT sums as ints, NaN and ±inf as null, BLOB as base64, INTERVAL as an ISO 8601 duration.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from sanctum.errors import InvalidInput

__all__ = ["QueryError", "QueryResult", "run_query"]

READ_ONLY = "only one read-only SELECT statement is allowed"
_TABLE_NAME = re.compile(r"^[a-z0-9_]+$")
_EXPLAIN = re.compile(r"^\s*explain\s+(?:analy[sz]e\s+)?(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
_OUT_OF_RANGE = re.compile(r"^<value out of range: (-?)\d+>$")
_TZ_OFFSET = re.compile(r"([+-]\d\d)(\d\d)$")
_BATCH_ROWS = 2048


class QueryError(InvalidInput, ValueError):
    """A query refused or failed; the message is DuckDB's or ours and safe to show the user."""

    code = "invalid_query"


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]  # DuckDB type names, e.g. "BIGINT", "DECIMAL(10,2)", "TIMESTAMP"
    rows: list[list[object]]
    truncated: bool
    row_count: int  # rows returned (after truncation)


def _settings(memory_limit: str, threads: int, timeout_s: float) -> list[tuple[str, str]]:
    """In order: the file-system settings first, because once external access is off DuckDB refuses
    to change them, and lock_configuration last."""
    return [
        ("temp_directory", "''"),  # in-memory database without temp dir: nothing spills to disk
        ("max_temp_directory_size", "'0B'"),
        # Paths DuckDB derives from $HOME would show in duckdb_settings() and error messages.
        ("home_directory", "'/nonexistent'"),
        ("secret_directory", "'/nonexistent'"),
        ("extension_directory", "'/nonexistent'"),
        ("memory_limit", _quote(memory_limit)),
        ("threads", str(int(threads))),
        ("max_execution_time", str(max(1, math.ceil(timeout_s * 1000)))),  # engine-side backstop
        ("autoinstall_known_extensions", "false"),
        ("autoload_known_extensions", "false"),
        ("allow_community_extensions", "false"),
        ("allow_unsigned_extensions", "false"),
        ("allow_extension_repositories", "'forbidden'"),
        ("allow_persistent_secrets", "false"),
        # Otherwise "FROM x" finds a DataFrame/Arrow variable named x in the calling Python frames.
        ("python_enable_replacements", "false"),
        ("enable_external_access", "false"),
        ("lock_configuration", "true"),
    ]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(
    *, memory_limit: str = "512MB", threads: int = 1, timeout_s: float = 30
) -> duckdb.DuckDBPyConnection:
    """A fresh, locked-down in-memory database (separate from every other connection's)."""
    con = duckdb.connect(":memory:")
    try:
        for name, value in _settings(memory_limit, threads, timeout_s):
            con.execute(f"SET {name} = {value}")
    except BaseException:
        con.close()
        raise
    return con


def check_statement(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Accept exactly one statement that DuckDB parses as a SELECT (which covers WITH, VALUES,
    TABLE, FROM-first, DESCRIBE, SHOW and SUMMARIZE), or EXPLAIN [ANALYZE] of one. PIVOT without an
    IN list parses as several statements and is refused."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(_message(exc)) from None
    if len(statements) != 1:
        raise QueryError(READ_ONLY if statements else "the query is empty")
    kind = statements[0].type
    if kind == duckdb.StatementType.EXPLAIN:
        match = _EXPLAIN.match(sql)
        if match is None:
            raise QueryError(READ_ONLY)
        check_statement(con, match["rest"])  # EXPLAIN ANALYZE runs its statement: same rules
    elif kind != duckdb.StatementType.SELECT:
        raise QueryError(READ_ONLY)


def run_query(
    tables: Mapping[str, pa.Table],
    sql: str,
    *,
    max_rows: int | None,
    timeout_s: float = 30,
    memory_limit: str = "512MB",
    threads: int = 1,
    max_bytes: int = 64 * 1024 * 1024,
) -> QueryResult:
    """Run one read-only statement over ``tables`` (keys are ``tables.sql_name`` names).

    At most ``max_rows`` rows (None: no row cap) and about ``max_bytes`` of Arrow data are fetched;
    ``truncated`` says whether more existed. DuckDB streams the result, so a capped query over a
    huge join does not materialise it.
    """
    for name in tables:
        if not _TABLE_NAME.fullmatch(name):
            raise ValueError(f"invalid SQL table name {name!r}")  # a caller bug, not user input
    con = connect(memory_limit=memory_limit, threads=threads, timeout_s=timeout_s)
    timed_out = threading.Event()
    finished = threading.Event()
    lock = threading.Lock()

    def interrupt() -> None:
        with lock:
            if not finished.is_set():
                timed_out.set()
                con.interrupt()

    timer = threading.Timer(timeout_s, interrupt)
    timer.daemon = True
    try:
        check_statement(con, sql)
        for name, table in tables.items():
            con.register(name, table)
        timer.start()
        relation = con.sql(sql)
        columns, types = list(relation.columns), [str(t) for t in relation.types]
        batches, truncated = _fetch(relation.to_arrow_reader(_BATCH_ROWS), max_rows, max_bytes)
        rows = _to_rows(batches, len(columns))
    except QueryError:
        raise
    except duckdb.InterruptException:
        raise QueryError(f"query took longer than {timeout_s:g} s") from None
    except duckdb.OutOfMemoryException as exc:
        raise QueryError(
            f"query needs more memory than the limit of {memory_limit}: {_message(exc)}"
        ) from None
    except duckdb.Error as exc:
        if timed_out.is_set():
            raise QueryError(f"query took longer than {timeout_s:g} s") from None
        raise QueryError(_message(exc)) from None
    except pa.ArrowException as exc:
        raise QueryError(f"the result could not be converted: {exc}") from None
    finally:
        with lock:
            finished.set()
        timer.cancel()
        con.close()
    return QueryResult(columns, types, rows, truncated, len(rows))


def _message(exc: BaseException) -> str:
    """DuckDB's first lines; the advice it appends (about temp directories, extensions) does not
    apply in the sandbox."""
    lines = str(exc).strip().splitlines()
    keep = lines[:1]
    for line in lines[1:]:
        if not line.strip() or line.startswith(("Database is launched", "Please try installing")):
            break
        keep.append(line)
    return "\n".join(keep)


def _fetch(
    reader: pa.RecordBatchReader, max_rows: int | None, max_bytes: int
) -> tuple[list[pa.RecordBatch], bool]:
    """Read batches until more than max_rows rows or max_bytes of Arrow data have arrived, keeping
    what fits; stopping early is what lets DuckDB stop producing the rest."""
    batches: list[pa.RecordBatch] = []
    rows = size = 0
    for batch in reader:
        over_rows = max_rows is not None and rows + batch.num_rows > max_rows
        over_bytes = size + batch.nbytes > max_bytes
        if over_rows or over_bytes:
            keep = max_rows - rows if max_rows is not None and over_rows else batch.num_rows
            if over_bytes:  # keep rows in proportion to the budget left, at least one row overall
                fit = (max_bytes - size) * batch.num_rows // max(batch.nbytes, 1)
                keep = min(keep, max(fit, 0 if rows else 1))
            batches.append(batch.slice(0, keep))
            return batches, True
        batches.append(batch)
        rows += batch.num_rows
        size += batch.nbytes
    return batches, False


def _to_rows(batches: list[pa.RecordBatch], width: int) -> list[list[object]]:
    rows: list[list[object]] = []
    for batch in batches:
        columns = [_column(batch.column(i)) for i in range(width)]
        rows.extend([list(row) for row in zip(*columns, strict=True)] if width else [])
    return rows


def _column(array: pa.Array) -> list[object]:
    kind = array.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_time(kind):
        # Arrow's own text: no Python datetime, so nanoseconds, years past 9999 and DuckDB's
        # infinities all come out instead of overflowing.
        iso = pa.types.is_timestamp(kind)
        return [_temporal(text, iso) for text in array.cast(pa.string()).to_pylist()]
    try:
        return [_json(value) for value in array.to_pylist()]
    except (ValueError, OverflowError, pa.ArrowException):
        return [_scalar(array, i) for i in range(len(array))]


def _scalar(array: pa.Array, index: int) -> object:
    try:
        return _json(array[index].as_py())
    except (ValueError, OverflowError, pa.ArrowException):
        return "<value not representable>"  # e.g. an infinite timestamp inside a LIST


def _temporal(text: str | None, timestamp: bool) -> str | None:
    if text is None:
        return None
    match = _OUT_OF_RANGE.match(text)
    if match:
        return "-infinity" if match[1] else "infinity"
    if timestamp:
        text = _TZ_OFFSET.sub(r"\1:\2", text.replace(" ", "T", 1))
    return text


def _json(value: object) -> object:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return f"P{value.days}DT{_seconds(value.seconds * 10**9 + value.microseconds * 1000)}S"
    if isinstance(value, pa.MonthDayNano):
        return f"P{value.months}M{value.days}DT{_seconds(value.nanoseconds)}S"
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return str(value)


def _seconds(nanoseconds: int) -> str:
    """Exact seconds for an ISO 8601 duration: 3723.5, not a rounded float."""
    text = format(decimal.Decimal(nanoseconds).scaleb(-9), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def settings_in_force(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Current values of the hardening settings as DuckDB reports them, for tests and diagnostics."""
    names = [name for name, _ in _settings("1MB", 1, 1)]
    query = "SELECT name, value FROM duckdb_settings() WHERE list_contains($1, name)"
    return dict(con.execute(query, [names]).fetchall())
