"""Apply a column policy to a clinical table on ingest, and compute what each role sees on read.

Why these choices:

- Fail closed. A column the policy does not name, a policy column the table lacks, or a value one
  transform cannot handle rejects the whole table: a half-de-identified table is worse than none.
- Consistent with DICOM. The patient column gets exactly ``Pseudonymiser.patient_id`` and dates move
  by ``date_offset_days(patient_id(original))``, the same derivation ``sanctum.deid.dicom`` uses, so
  one patient's table rows and images link up and keep the same intervals.
- Errors name the column and the row, never the value: rejection messages reach logs and screens.
- Vectorised. Every transform is pyarrow.compute over whole columns; the keyed HMAC runs once per
  distinct value (``pc.unique``) and is mapped back with ``index_in`` + ``take``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from sanctum.access.permissions import Role
from sanctum.deid.pseudonyms import Pseudonymiser
from sanctum.deid.table_policy import (
    ColumnAction,
    Generalise,
    Mask,
    TablePolicy,
    TopBottomCode,
    edge_text,
)
from sanctum.errors import InvalidInput

__all__ = ["ColumnReport", "TabularError", "TabularReport", "apply_ingest", "view_for_role"]

MASK = "****"
_MS_PER_DAY = 86_400_000
_PER_DAY = {"s": 86_400, "ms": _MS_PER_DAY, "us": _MS_PER_DAY * 1000, "ns": _MS_PER_DAY * 1_000_000}

Array = pa.ChunkedArray
_T = TypeVar("_T")


class TabularError(InvalidInput, ValueError):
    """A table the policy cannot be applied to; the message names the column and row, no value."""

    code = "deid_rejected"


@dataclass(frozen=True)
class ColumnReport:
    action: str
    changed: int


@dataclass
class TabularReport:
    """What ingest did: row count and, per column, the action and how many values it changed."""

    rows: int
    columns: dict[str, ColumnReport] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "columns": {n: {"action": c.action, "changed": c.changed} for n, c in self.columns.items()},
        }


class _Fail(Exception):
    """A transform failure inside one column; ``_run`` adds the column name."""

    def __init__(self, problem: str, row: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.row = problem, row


def _fail_at(mask: Array, problem: str) -> None:
    """Raise for the first row where ``mask`` is true (rows counted from 1, header not counted)."""
    index = pc.index(pc.fill_null(mask, False), True).as_py()
    if index is not None and index >= 0:
        raise _Fail(problem, index + 1)


def _plain(arr: Array) -> Array:
    """Dictionary-encoded columns (common in Parquet) as their value type."""
    return arr.cast(arr.type.value_type) if pa.types.is_dictionary(arr.type) else arr


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _as_text(arr: Array, what: str) -> Array:
    """Text, integer or boolean columns as strings; anything else is not accepted for ``what``."""
    if _is_text(arr.type):
        return arr.cast(pa.string()) if pa.types.is_large_string(arr.type) else arr
    if pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type):
        return arr.cast(pa.string())
    raise _Fail(f"{what} needs a text or integer column, this column is {arr.type}")


def _map_distinct(arr: Array, fn: Callable[[str], str]) -> Array:
    """Apply ``fn`` once per distinct non-null string and map the results back to every row."""
    uniques = pc.unique(arr).drop_null()
    mapped = pa.array([fn(v) for v in uniques.to_pylist()], pa.string())
    return pc.take(mapped, pc.index_in(arr, value_set=uniques))


def _non_null(arr: Array) -> int:
    return len(arr) - arr.null_count


# --- ingest-only transforms --------------------------------------------------------------------


def _column_mac(p: Pseudonymiser, column: str) -> Callable[[str], str]:
    """A pseudonym per (column, value): the column name is in the HMAC's domain so equal text in two
    columns gives unrelated pseudonyms, and the domain cannot equal Pseudonymiser's own domains.
    80 bits in hex: collisions are negligible at any table size, and hex is encoded in C (base32 is
    pure Python and dominated the ingest time)."""
    prefix = b"table-column\x00" + column.encode("utf-8") + b"\x00"
    key = p.key

    def mac(value: str) -> str:
        return hmac.digest(key, prefix + value.encode("utf-8", "surrogateescape"), "sha256")[:10].hex()

    return mac


@dataclass(frozen=True)
class _Patients:
    """Each row's patient pseudonym and (when a column is date-shifted) date offset, derived once per
    distinct patient exactly as DICOM does: ``patient_id(original)`` and
    ``date_offset_days(patient_id(original))``."""

    column: str
    pseudonyms: Array
    offsets: Array | None


def _patients(table: pa.Table, name: str, p: Pseudonymiser, need_offsets: bool) -> _Patients:
    text = _as_text(_plain(table.column(name)), "the patient column")
    if need_offsets:
        blank = pc.or_kleene(pc.is_null(text), pc.equal(pc.utf8_trim(text, " \x00"), ""))
        _fail_at(blank, "date_shift needs a patient ID in every row, the patient column is empty in row")
    uniques = pc.unique(text).drop_null()
    index = pc.index_in(text, value_set=uniques)
    pseudonyms = [p.patient_id(v) for v in uniques.to_pylist()]
    offsets = None
    if need_offsets:
        days = pa.array([p.date_offset_days(v) for v in pseudonyms], pa.int32())
        offsets = pc.take(days, index)
    return _Patients(name, pc.take(pa.array(pseudonyms, pa.string()), index), offsets)


def _date_shift(arr: Array, offsets: Array) -> tuple[Array, int]:
    t = arr.type
    try:
        if pa.types.is_date32(t):
            out = pc.add_checked(arr.cast(pa.int32()), offsets).cast(t)
        elif pa.types.is_date64(t) or pa.types.is_timestamp(t):
            per_day = _MS_PER_DAY if pa.types.is_date64(t) else _PER_DAY[t.unit]
            step = pc.multiply_checked(offsets.cast(pa.int64()), per_day)
            out = pc.add_checked(arr.cast(pa.int64()), step).cast(t)
        elif _is_text(t):
            parsed = _parse_iso_dates(arr)
            shifted = pc.add_checked(parsed.cast(pa.int32()), offsets).cast(pa.date32())
            out = pc.strftime(shifted, "%Y-%m-%d").cast(t)
        else:
            raise _Fail(f"date_shift needs a date, timestamp or YYYY-MM-DD text column, this column is {t}")
    except pa.ArrowInvalid:
        raise _Fail("date_shift moves a date out of the representable range") from None
    return out, _non_null(arr)


def _parse_iso_dates(arr: Array) -> Array:
    """YYYY-MM-DD text as date32; the first value in another form fails with its row."""
    parsed = pc.strptime(arr, format="%Y-%m-%d", unit="s", error_is_null=True).cast(pa.date32())
    # strptime accepts some impossible days (2020-02-30) and loose forms: a value is a date only if
    # formatting it back gives the same text.
    same = pc.equal(pc.strftime(parsed, "%Y-%m-%d"), arr)
    _fail_at(
        pc.and_(pc.is_valid(arr), pc.invert(pc.fill_null(same, False))),
        "not a date in YYYY-MM-DD form in row",
    )
    return parsed


# --- transforms allowed on ingest and in views -------------------------------------------------


def _numeric(arr: Array, what: str) -> Array:
    """Numeric columns as they are; text columns parsed as numbers, failing at the first that is not."""
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_decimal(arr.type):
        return arr
    if not _is_text(arr.type):
        raise _Fail(f"{what} needs a numeric column, this column is {arr.type}")
    stripped = pc.utf8_trim_whitespace(arr)
    numeric = pc.match_substring_regex(stripped, r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
    _fail_at(pc.and_(pc.is_valid(arr), pc.invert(numeric)), f"{what}: not a number in row")
    return stripped.cast(pa.float64())


def _generalise(arr: Array, g: Generalise) -> tuple[Array, int]:
    if g.bins is not None:
        values = _numeric(arr, "generalise bins").cast(pa.float64())
        out = pa.chunked_array([pa.nulls(len(values), pa.string())])
        for i, label in enumerate(g.bin_labels()):
            lo, hi = g.bins[i], g.bins[i + 1]
            upper = pc.less_equal(values, hi) if i == len(g.bins) - 2 else pc.less(values, hi)
            out = pc.if_else(pc.and_(pc.greater_equal(values, lo), upper), label, out)
        _fail_at(
            pc.and_(pc.is_valid(values), pc.is_null(out)),
            f"generalise bins: value outside {edge_text(g.bins[0])}..{edge_text(g.bins[-1])} (or NaN) in row",
        )
        return out, _non_null(arr)
    if g.date is not None:
        if _is_text(arr.type):
            dates: Array = _parse_iso_dates(arr)
        elif pa.types.is_date(arr.type) or pa.types.is_timestamp(arr.type):
            dates = arr
        else:
            raise _Fail(f"generalise date needs a date, timestamp or YYYY-MM-DD text column, not {arr.type}")
        # year/month kernels rather than strftime: several times faster on a million rows.
        out = pc.year(dates).cast(pa.string())
        if g.date == "month":
            out = pc.binary_join_element_wise(
                out, pc.utf8_lpad(pc.month(dates).cast(pa.string()), 2, "0"), "-"
            )
        return out, _non_null(arr)
    if g.prefix is not None:
        text = _as_text(arr, "generalise prefix")
        rest = pc.max_element_wise(pc.subtract(pc.utf8_length(text), g.prefix), 0)
        head = pc.utf8_slice_codeunits(text, 0, g.prefix)
        out = pc.binary_join_element_wise(head, pc.binary_repeat("*", rest), "")
        return out, pc.sum(pc.greater(rest, 0)).as_py() or 0
    mapping = g.hierarchy()
    text = _as_text(arr, "generalise hierarchy_csv")
    keys = pa.array(list(mapping), pa.string())
    index = pc.index_in(text, value_set=keys)
    out = pc.take(pa.array(list(mapping.values()), pa.string()), index)
    unmapped = pc.and_(pc.is_valid(text), pc.is_null(index))
    if g.default is None:
        _fail_at(unmapped, 'generalise hierarchy_csv: value not in the hierarchy (and no "default") in row')
    else:
        out = pc.if_else(unmapped, g.default, out)
    changed = pc.sum(pc.fill_null(pc.not_equal(out, text), False)).as_py() or 0
    return out, changed


def _mask(arr: Array, m: Mask) -> tuple[Array, int]:
    text = _as_text(arr, "mask")
    if m.value is not None:
        return pc.if_else(pc.is_valid(text), m.value, pa.scalar(None, pa.string())), _non_null(arr)
    assert m.keep_last is not None
    tail = pc.binary_join_element_wise(MASK, pc.utf8_slice_codeunits(text, -m.keep_last), "")
    # A value no longer than keep_last would be shown whole: mask it entirely.
    out = pc.if_else(pc.greater(pc.utf8_length(text), m.keep_last), tail, MASK)
    return out, _non_null(arr)


def _top_bottom(arr: Array, t: TopBottomCode) -> tuple[Array, int]:
    values = _numeric(arr, "top_bottom_code")
    changed = 0
    for bound, outside in ((t.min, pc.less), (t.max, pc.greater)):
        if bound is None:
            continue
        try:
            scalar = pa.scalar(bound).cast(values.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise _Fail(
                f"top_bottom_code bound {edge_text(bound)} does not fit a {values.type} column"
            ) from None
        hit = outside(values, scalar)
        changed += pc.sum(hit).as_py() or 0
        values = pc.if_else(hit, scalar, values)
    return values, changed


# --- driving -----------------------------------------------------------------------------------


def _transform(
    arr: Array,
    name: str,
    action: ColumnAction,
    key: Pseudonymiser | None = None,
    patients: _Patients | None = None,
) -> tuple[Array, int]:
    """One column through one action: the new column and how many values changed. ``patients`` is
    given on ingest when the policy has a patient column; ``name`` is the patient column's name when
    its pseudonyms are already in ``patients``."""
    kind = action.action
    if kind == "keep":
        return arr, 0  # untouched, so a kept column is stored byte for byte as uploaded
    arr = _plain(arr)
    if kind == "pseudonymise":
        if patients is not None and name == patients.column:
            return patients.pseudonyms, _non_null(arr)
        assert key is not None
        return _map_distinct(_as_text(arr, "pseudonymise"), _column_mac(key, name)), _non_null(arr)
    if kind == "date_shift":
        assert patients is not None and patients.offsets is not None
        return _date_shift(arr, patients.offsets)
    if isinstance(action, Generalise):
        out, changed = _generalise(arr, action)
    elif isinstance(action, Mask):
        out, changed = _mask(arr, action)
    elif isinstance(action, TopBottomCode):
        out, changed = _top_bottom(arr, action)
    else:  # pragma: no cover - the policy model admits only the actions above
        raise _Fail(f"unknown action {kind}")
    # Nulls stay null, whatever the transform did with them.
    return pc.if_else(pc.is_valid(arr), out, pa.scalar(None, out.type)), changed


def _run(name: str, step: Callable[[], _T]) -> _T:
    """Run one column's transform, turning any failure into a TabularError naming the column."""
    try:
        return step()
    except _Fail as exc:
        where = f"column {name!r}: {exc.problem}"
        raise TabularError(f"{where} {exc.row}" if exc.row is not None else where) from None
    except (pa.ArrowException, ValueError, OverflowError) as exc:
        # Arrow's messages can quote cell values: report only the kind of failure.
        raise TabularError(f"column {name!r}: cannot be transformed ({type(exc).__name__})") from None


def _check_columns(table: pa.Table, expected: list[str], what: str) -> None:
    present = table.column_names
    unnamed = [n for n in present if n not in expected]
    if unnamed:
        raise TabularError(
            f"column {unnamed[0]!r} is not in the {what}"
            + (f" (nor {len(unnamed) - 1} more)" if len(unnamed) > 1 else "")
            + ": every column needs an action, use drop or keep explicitly"
        )
    missing = [n for n in expected if n not in present]
    if missing:
        raise TabularError(f"column {missing[0]!r} is in the {what} but not in the table")


def apply_ingest(
    table: pa.Table, policy: TablePolicy, pseudonymiser: Pseudonymiser
) -> tuple[pa.Table, TabularReport]:
    """De-identify an uploaded table under ``policy``: the table to store and a report without values.

    Raises ``TabularError`` (nothing stored) if the table and policy disagree on columns or any value
    cannot be transformed.
    """
    _check_columns(table, list(policy.columns), "policy")
    patients = None
    shift = any(a.action == "date_shift" for a in policy.columns.values())
    pid = policy.patient_column  # the policy model requires one when a column is date-shifted
    if pid is not None and (shift or policy.columns[pid].action == "pseudonymise"):
        patients = _run(pid, lambda: _patients(table, pid, pseudonymiser, shift))
    report = TabularReport(rows=table.num_rows)
    names, arrays = [], []
    for name in table.column_names:
        action = policy.columns[name]
        if action.action == "drop":
            report.columns[name] = ColumnReport("drop", _non_null(table.column(name)))
            continue
        column = table.column(name)
        out, changed = _run(
            name, lambda c=column, n=name, a=action: _transform(c, n, a, pseudonymiser, patients)
        )
        report.columns[name] = ColumnReport(action.action, changed)
        names.append(name)
        arrays.append(out)
    return pa.table(arrays, names=names), report


def view_for_role(table: pa.Table, policy: TablePolicy, role: str) -> pa.Table:
    """The stored table as ``role`` sees it: unchanged without a view, else the view's actions applied.

    Views only reduce: they run on the stored table, and the policy model admits no key-needing action.
    """
    if role not in {r.value for r in Role}:
        raise TabularError(f"unknown role {role!r}")
    view = policy.views.get(role)
    if not view:
        return table
    _check_columns(table, policy.stored_columns(), "policy's stored columns")
    names, arrays = [], []
    for name in table.column_names:
        action = view.get(name)
        if action is None:
            names.append(name)
            arrays.append(table.column(name))
            continue
        if action.action == "drop":
            continue
        column = table.column(name)
        out, _ = _run(name, lambda c=column, n=name, a=action: _transform(c, n, a))
        names.append(name)
        arrays.append(out)
    return pa.table(arrays, names=names)
