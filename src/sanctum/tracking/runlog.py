"""Logging to a run: params, metrics, tags, and reading metric histories back.

Everything a batch carries is validated first (MLflow's limits, key rules, value lengths), then
written in the request's one transaction, so a refused batch leaves nothing behind. Each metric's
latest value is kept beside its history, so searches compare and sort on it in SQL.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.projects.service import ProjectContext
from sanctum.tracking.models import Run, RunLatestMetric, RunMetric, RunParam, RunTag
from sanctum.tracking.service import (
    MAX_METRICS,
    MAX_PARAM_VALUE,
    MAX_PARAMS,
    MAX_TAG_VALUE,
    MAX_TAGS,
    active_run,
    as_int,
    check_key,
    get_run,
    invalid,
    key_values,
    missing,
    next_token,
    now_ms,
    page_limit,
    page_offset,
    set_tags,
)


def metric_value(value: Any) -> float:
    """MLflow sends non-finite values as the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, bool) or value is None:
        raise invalid(f"metric value must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise invalid(f"metric value must be a number, got {value!r}") from None


def _log_params(db: Session, run: Run, pairs: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for key, value in pairs:
        if seen.setdefault(key, value) != value:
            raise invalid(f"param '{key}' appears twice in the batch with different values")
    keys = list(seen)
    existing = (
        dict(
            db.execute(
                select(RunParam.key, RunParam.value).where(RunParam.run_id == run.id, RunParam.key.in_(keys))
            ).all()
        )
        if keys
        else {}
    )
    for key, value in seen.items():
        if key in existing:
            if existing[key] != value:
                raise invalid(
                    f"changing param values is not allowed: param '{key}' was already logged with value "
                    f"'{existing[key]}' for run {run.id}; the new value is '{value}'"
                )
            continue
        db.add(RunParam(run_id=run.id, key=key, value=value))


def _metrics(items: Any) -> list[tuple[str, float, int, int]]:
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise invalid("metrics must be a list of {key, value, timestamp, step} objects")
    if len(items) > MAX_METRICS:
        raise invalid(f"a batch may hold at most {MAX_METRICS} metrics, got {len(items)}")
    return [
        (
            check_key(m.get("key"), "metric"),
            metric_value(m.get("value")),
            as_int(m.get("timestamp"), "timestamp", now_ms()),
            as_int(m.get("step"), "step", 0),
        )
        for m in items
    ]


def _latest_order(step: int, timestamp: int, value: float) -> tuple[int, int, float]:
    return (step, timestamp, -math.inf if math.isnan(value) else value)


def _log_metrics(db: Session, run: Run, points: list[tuple[str, float, int, int]]) -> None:
    latest: dict[str, tuple[str, float, int, int]] = {}
    for point in points:
        key, value, timestamp, step = point
        db.add(
            RunMetric(
                run_id=run.id,
                key=key,
                value=0.0 if math.isnan(value) else value,
                is_nan=math.isnan(value),
                timestamp=timestamp,
                step=step,
            )
        )
        best = latest.get(key)
        if best is None or _latest_order(step, timestamp, value) > _latest_order(best[3], best[2], best[1]):
            latest[key] = point
    for key, (_, value, timestamp, step) in latest.items():
        row = db.get(RunLatestMetric, (run.id, key))
        nan = math.isnan(value)
        if row is None:
            db.add(
                RunLatestMetric(
                    run_id=run.id,
                    key=key,
                    value=0.0 if nan else value,
                    is_nan=nan,
                    timestamp=timestamp,
                    step=step,
                )
            )
        elif _latest_order(step, timestamp, value) >= _latest_order(
            row.step, row.timestamp, math.nan if row.is_nan else row.value
        ):
            row.value, row.is_nan, row.timestamp, row.step = (0.0 if nan else value), nan, timestamp, step


def log_batch(db: Session, ctx: ProjectContext, run_id: Any, *, metrics: Any, params: Any, tags: Any) -> None:
    """All three validated first (limits, keys, value lengths), then written in one transaction."""
    run = active_run(db, ctx, run_id)
    points = _metrics(metrics)
    param_pairs = key_values(params, "param", MAX_PARAMS, MAX_PARAM_VALUE)
    tag_pairs = key_values(tags, "tag", MAX_TAGS, MAX_TAG_VALUE)
    _log_params(db, run, param_pairs)
    _log_metrics(db, run, points)
    set_tags(db, run, tag_pairs)


def delete_tag(db: Session, ctx: ProjectContext, run_id: Any, key: Any) -> None:
    run = active_run(db, ctx, run_id)
    tag = db.get(RunTag, (run.id, check_key(key, "tag")))
    if tag is None:
        raise missing(f"no tag with key {key!r} on run {run.id}")
    db.delete(tag)


def metric_history(
    db: Session, ctx: ProjectContext, run_id: Any, key: Any, *, max_results: Any, page_token: Any
) -> tuple[list[RunMetric], str | None]:
    run = get_run(db, ctx, run_id)
    limit, offset = page_limit(max_results, 25000), page_offset(page_token)
    query = (
        select(RunMetric)
        .where(RunMetric.run_id == run.id, RunMetric.key == check_key(key, "metric"))
        .order_by(RunMetric.step, RunMetric.timestamp, RunMetric.id)
        .offset(offset)
        .limit(limit + 1)
    )
    rows = list(db.scalars(query))
    return rows[:limit], next_token(offset, limit, len(rows))


def run_data(db: Session, run_ids: list[str]) -> dict[str, dict[str, list[Any]]]:
    """Latest metrics, params and tags of many runs in three queries (no per-run round trips)."""
    data: dict[str, dict[str, list[Any]]] = {r: {"metrics": [], "params": [], "tags": []} for r in run_ids}
    if not run_ids:
        return data
    for table, name in ((RunLatestMetric, "metrics"), (RunParam, "params"), (RunTag, "tags")):
        for row in db.scalars(select(table).where(table.run_id.in_(run_ids)).order_by(table.key)):
            data[row.run_id][name].append(row)
    return data
