"""Logging to a run: params, metrics, tags, and reading metric histories back.

Everything a batch carries is validated first (MLflow's limits, key rules, value lengths), then
written in the request's one transaction, so a refused batch leaves nothing behind. Each metric's
latest value is kept beside its history, so searches compare and sort on it in SQL.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Text,
    bindparam,
    insert,
    literal_column,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from sanctum.projects.service import ProjectContext
from sanctum.tracking.models import RunLatestMetric, RunMetric, RunParam, RunTag
from sanctum.tracking.service import (
    MAX_METRICS,
    MAX_PARAM_VALUE,
    MAX_PARAMS,
    MAX_TAG_VALUE,
    MAX_TAGS,
    active_run,
    as_int,
    check_key,
    existing_run_id,
    get_run,
    invalid,
    key_values,
    missing,
    next_token,
    now_ms,
    page_limit,
    page_offset,
    set_tags,
    writable_run_id,
)

# Built once, as in ``service``: per call, statement construction would cost more than the query.
_PARAMS = select(RunParam.key, RunParam.value).where(
    RunParam.run_id == bindparam("run_id"), RunParam.key.in_(bindparam("keys", expanding=True))
)
_INSERT_PARAMS = insert(RunParam.__table__)  # type: ignore[arg-type]
_metric_table = RunMetric.__table__
_HISTORY_COLUMNS = ("run_id", "key", "value", "is_nan", "timestamp", "step")
_DRIVER_INSERTS: dict[str, tuple[str, bool]] = {}
_latest_table = RunLatestMetric.__table__
_LATEST = select(
    _latest_table.c.key,
    _latest_table.c.value,
    _latest_table.c.is_nan,
    _latest_table.c.timestamp,
    _latest_table.c.step,
).where(
    _latest_table.c.run_id == bindparam("run_id"), _latest_table.c.key.in_(bindparam("keys", expanding=True))
)
_INSERT_LATEST = insert(_latest_table)
_UPDATE_LATEST = (
    update(_latest_table)
    .where(_latest_table.c.run_id == bindparam("b_run_id"), _latest_table.c.key == bindparam("b_key"))
    .values(
        value=bindparam("b_value"),
        is_nan=bindparam("b_is_nan"),
        timestamp=bindparam("b_timestamp"),
        step=bindparam("b_step"),
    )
)
_HISTORY = (
    select(RunMetric)
    .where(RunMetric.run_id == bindparam("run_id"), RunMetric.key == bindparam("key"))
    .order_by(RunMetric.step, RunMetric.timestamp, RunMetric.id)
    .offset(bindparam("offset"))
    .limit(bindparam("limit"))
)
_HISTORY_ROWS = (
    select(_metric_table.c.value, _metric_table.c.is_nan, _metric_table.c.timestamp, _metric_table.c.step)
    .where(_metric_table.c.run_id == bindparam("run_id"), _metric_table.c.key == bindparam("key"))
    .order_by(_metric_table.c.step, _metric_table.c.timestamp, _metric_table.c.id)
    .offset(bindparam("offset"))
    .limit(bindparam("limit"))
)


class LatestMetric(NamedTuple):
    """A run's latest value of one metric, as ``run_data`` gives it (``RunLatestMetric``'s columns)."""

    run_id: str
    key: str
    value: float
    is_nan: bool
    timestamp: int
    step: int


class KeyValue(NamedTuple):
    """A param or tag of a run, as ``run_data`` gives it."""

    run_id: str
    key: str
    value: str


def _run_data_statement() -> Any:
    """Latest metrics, params and tags of a page of runs in one statement (one round trip, one
    statement to run instead of three): kind 0, 1, 2, then run, key, text, and the metric's fields."""
    ids = bindparam("run_ids", expanding=True)
    m, p, t = (table.__table__ for table in (RunLatestMetric, RunParam, RunTag))
    blank = [null().cast(Float), null().cast(Boolean), null().cast(BigInteger), null().cast(BigInteger)]
    return union_all(
        select(
            literal_column("0").label("kind"),
            m.c.run_id,
            m.c.key,
            null().cast(Text).label("text"),
            m.c.value,
            m.c.is_nan,
            m.c.timestamp,
            m.c.step,
        ).where(m.c.run_id.in_(ids)),
        select(literal_column("1"), p.c.run_id, p.c.key, p.c.value, *blank).where(p.c.run_id.in_(ids)),
        select(literal_column("2"), t.c.run_id, t.c.key, t.c.value, *blank).where(t.c.run_id.in_(ids)),
    ).order_by(literal_column("kind"), literal_column("key"))


_RUN_DATA = _run_data_statement()


def metric_value(value: Any) -> float:
    """MLflow sends non-finite values as the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, bool) or value is None:
        raise invalid(f"metric value must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise invalid(f"metric value must be a number, got {value!r}") from None


def _log_params(db: Session, run_id: str, pairs: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for key, value in pairs:
        if seen.setdefault(key, value) != value:
            raise invalid(f"param '{key}' appears twice in the batch with different values")
    if not seen:
        return
    existing = dict(db.execute(_PARAMS, {"run_id": run_id, "keys": list(seen)}).all())
    for key, value in seen.items():
        if key in existing and existing[key] != value:
            raise invalid(
                f"changing param values is not allowed: param '{key}' was already logged with value "
                f"'{existing[key]}' for run {run_id}; the new value is '{value}'"
            )
    new = [{"run_id": run_id, "key": k, "value": v} for k, v in seen.items() if k not in existing]
    if new:
        db.execute(_INSERT_PARAMS, new)


def _metrics(items: Any) -> list[tuple[str, float, int, int]]:
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise invalid("metrics must be a list of {key, value, timestamp, step} objects")
    if len(items) > MAX_METRICS:
        raise invalid(f"a batch may hold at most {MAX_METRICS} metrics, got {len(items)}")
    now = now_ms()
    checked: set[str] = set()  # a batch repeats a few keys: check each once
    points = []
    for m in items:
        key = m.get("key")
        if not (isinstance(key, str) and key in checked):
            checked.add(check_key(key, "metric"))
        value = metric_value(m.get("value"))
        points.append(
            (key, value, as_int(m.get("timestamp"), "timestamp", now), as_int(m.get("step"), "step", 0))
        )
    return points


def _latest_order(step: int, timestamp: int, value: float) -> tuple[int, int, float]:
    return (step, timestamp, -math.inf if math.isnan(value) else value)


def _metric_row(
    run_id: str, key: str, value: float, timestamp: int, step: int, *, prefix: str = ""
) -> dict[str, Any]:
    """A metric row's columns (NaN is a flag: SQLite would store it as NULL)."""
    nan = math.isnan(value)
    row = {
        "run_id": run_id,
        "key": key,
        "value": 0.0 if nan else value,
        "is_nan": nan,
        "timestamp": timestamp,
        "step": step,
    }
    return {prefix + name: v for name, v in row.items()} if prefix else row


def _insert_history(db: Session, rows: list[tuple[Any, ...]]) -> None:
    """Up to 1,000 history rows through the driver's own ``executemany``. The values are plain
    str, float, bool and int, which both drivers take as they are, and SQLAlchemy's per-row
    parameter processing would cost more than the database's insert (bench/tracking.py)."""
    connection = db.connection()
    dialect = connection.dialect
    found = _DRIVER_INSERTS.get(dialect.name)
    if found is None:
        compiled = insert(_metric_table).compile(dialect=dialect, column_keys=list(_HISTORY_COLUMNS))
        assert not compiled.positional or tuple(compiled.positiontup or ()) == _HISTORY_COLUMNS
        found = _DRIVER_INSERTS[dialect.name] = (compiled.string, compiled.positional)
    sql, positional = found
    connection.exec_driver_sql(
        sql, rows if positional else [dict(zip(_HISTORY_COLUMNS, r, strict=True)) for r in rows]
    )


def _log_metrics(db: Session, run_id: str, points: list[tuple[str, float, int, int]]) -> None:
    """The history in one multi-row insert; each key's latest value read once and then inserted
    or updated, all rows at a time (the run is locked, so no other writer races on them)."""
    if not points:
        return
    history = []
    latest: dict[str, tuple[str, float, int, int]] = {}
    for point in points:
        key, value, timestamp, step = point
        nan = math.isnan(value)
        history.append((run_id, key, 0.0 if nan else value, nan, timestamp, step))
        best = latest.get(key)
        if best is None or _latest_order(step, timestamp, value) > _latest_order(best[3], best[2], best[1]):
            latest[key] = point
    _insert_history(db, history)
    stored = {row.key: row for row in db.execute(_LATEST, {"run_id": run_id, "keys": list(latest)})}
    inserts, updates = [], []
    for key, (_, value, timestamp, step) in latest.items():
        row = stored.get(key)
        if row is None:
            inserts.append(_metric_row(run_id, key, value, timestamp, step))
        elif _latest_order(step, timestamp, value) >= _latest_order(
            row.step, row.timestamp, math.nan if row.is_nan else row.value
        ):
            updates.append(_metric_row(run_id, key, value, timestamp, step, prefix="b_"))
    if inserts:
        db.execute(_INSERT_LATEST, inserts)
    if updates:
        db.execute(_UPDATE_LATEST, updates)


def log_batch(db: Session, ctx: ProjectContext, run_id: Any, *, metrics: Any, params: Any, tags: Any) -> None:
    """All three validated first (limits, keys, value lengths), then written in one transaction."""
    writable = writable_run_id(db, ctx, run_id)
    points = _metrics(metrics)
    param_pairs = key_values(params, "param", MAX_PARAMS, MAX_PARAM_VALUE)
    tag_pairs = key_values(tags, "tag", MAX_TAGS, MAX_TAG_VALUE)
    _log_params(db, writable, param_pairs)
    _log_metrics(db, writable, points)
    if tag_pairs:  # a tag may rename the run, so this one needs the run itself
        set_tags(db, get_run(db, ctx, writable), tag_pairs)


def delete_tag(db: Session, ctx: ProjectContext, run_id: Any, key: Any) -> None:
    run = active_run(db, ctx, run_id)
    tag = db.get(RunTag, (run.id, check_key(key, "tag")))
    if tag is None:
        raise missing(f"no tag with key {key!r} on run {run.id}")
    db.delete(tag)


def _history_page(
    db: Session, ctx: ProjectContext, run_id: Any, key: Any, max_results: Any, page_token: Any
) -> dict[str, Any]:
    """The checks of a history read, in order: the run (404), then the key and the paging."""
    found = existing_run_id(db, ctx, run_id)
    limit, offset = page_limit(max_results, 25000), page_offset(page_token)
    return {"run_id": found, "key": check_key(key, "metric"), "offset": offset, "limit": limit}


def metric_history(
    db: Session, ctx: ProjectContext, run_id: Any, key: Any, *, max_results: Any, page_token: Any
) -> tuple[list[RunMetric], str | None]:
    page = _history_page(db, ctx, run_id, key, max_results, page_token)
    rows = list(db.scalars(_HISTORY, page | {"limit": page["limit"] + 1}))
    return rows[: page["limit"]], next_token(page["offset"], page["limit"], len(rows))


def metric_history_rows(
    db: Session, ctx: ProjectContext, run_id: Any, key: Any, *, max_results: Any, page_token: Any
) -> tuple[list[Any], str | None]:
    """``metric_history`` as plain rows (value, is_nan, timestamp, step), for the API: loading
    10,000 ORM objects costs ten times what the query does."""
    page = _history_page(db, ctx, run_id, key, max_results, page_token)
    rows = list(db.execute(_HISTORY_ROWS, page | {"limit": page["limit"] + 1}))
    return rows[: page["limit"]], next_token(page["offset"], page["limit"], len(rows))


def run_data(db: Session, run_ids: list[str]) -> dict[str, dict[str, list[Any]]]:
    """Latest metrics (``LatestMetric``), params and tags (``KeyValue``) of many runs, each list
    ordered by key, in one query (no per-run round trips)."""
    data: dict[str, dict[str, list[Any]]] = {r: {"metrics": [], "params": [], "tags": []} for r in run_ids}
    if not run_ids:
        return data
    for kind, run_id, key, text, value, is_nan, timestamp, step in db.execute(
        _RUN_DATA, {"run_ids": run_ids}
    ):
        if kind == 0:
            data[run_id]["metrics"].append(LatestMetric(run_id, key, value, is_nan, timestamp, step))
        else:
            data[run_id]["params" if kind == 1 else "tags"].append(KeyValue(run_id, key, text))
    return data
