"""Experiments and runs of one project: every query joins through the caller's project, so an id
from another project is simply "does not exist" (MLflow's RESOURCE_DOES_NOT_EXIST, 404).

Values are validated against MLflow's own limits before anything is written, so a refused batch
leaves nothing behind even before the transaction rolls back.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, Select, Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sanctum.projects.service import ProjectContext
from sanctum.tracking import MlflowError
from sanctum.tracking import search as run_search
from sanctum.tracking.models import (
    ACTIVE,
    DELETED,
    Experiment,
    Run,
    RunTag,
)

MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
MAX_KEY, MAX_PARAM_VALUE, MAX_TAG_VALUE, MAX_NAME = 250, 6000, 8000, 256
MAX_RESULTS = 50000
RUN_STATUSES = {"RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"}
VIEW_TYPES = {"ACTIVE_ONLY": [ACTIVE], "DELETED_ONLY": [DELETED], "ALL": [ACTIVE, DELETED]}
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"

# The statements of the per-call paths, built once: building a SQLAlchemy expression and computing
# its cache key cost more than SQLite takes to answer it (bench/tracking.py).
_EXPERIMENT = select(Experiment).where(
    Experiment.id == bindparam("experiment_id"), Experiment.project_id == bindparam("project_id")
)
_EXPERIMENT_STAGE = select(Experiment.id, Experiment.lifecycle_stage).where(
    Experiment.id == bindparam("experiment_id"), Experiment.project_id == bindparam("project_id")
)
_RUN = (
    select(Run)
    .join(Experiment, Experiment.id == Run.experiment_id)
    .where(Run.id == bindparam("run_id"), Experiment.project_id == bindparam("project_id"))
)
_RUN_FOR_UPDATE = _RUN.with_for_update(of=Run)
_RUN_ID = (
    select(Run.id)
    .join(Experiment, Experiment.id == Run.experiment_id)
    .where(Run.id == bindparam("run_id"), Experiment.project_id == bindparam("project_id"))
)
_RUN_STAGE_FOR_UPDATE = (
    select(Run.id, Run.lifecycle_stage)
    .join(Experiment, Experiment.id == Run.experiment_id)
    .where(Run.id == bindparam("run_id"), Experiment.project_id == bindparam("project_id"))
    .with_for_update(of=Run)
)
_RUN_COLUMNS = tuple(Run.__table__.c)
_UPSERTS: dict[tuple[str, str], Insert] = {}


def now_ms() -> int:
    return int(time.time() * 1000)


def invalid(message: str) -> MlflowError:
    return MlflowError("INVALID_PARAMETER_VALUE", message)


def missing(message: str) -> MlflowError:
    return MlflowError("RESOURCE_DOES_NOT_EXIST", message)


def check_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        raise invalid(f"{what} key must be a non-empty string of at most {MAX_KEY} characters")
    if key.startswith("/") or ".." in key.split("/"):
        raise invalid(f"invalid {what} key {key!r}")
    return key


def as_int(value: Any, what: str, default: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            raise invalid(f"missing value for '{what}'")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"'{what}' must be an integer, got {value!r}") from None


# --------------------------------------------------------------------------- experiments


def _experiment_id(experiment_id: Any) -> int:
    try:
        return int(experiment_id)
    except (TypeError, ValueError):
        raise missing(f"no experiment with id {experiment_id!r}") from None


def get_experiment(db: Session, ctx: ProjectContext, experiment_id: Any) -> Experiment:
    params = {"experiment_id": _experiment_id(experiment_id), "project_id": ctx.project.id}
    found = db.scalar(_EXPERIMENT, params)
    if found is None:
        raise missing(f"no experiment with id {experiment_id!r}")
    return found


def get_experiment_by_name(db: Session, ctx: ProjectContext, name: Any) -> Experiment:
    found = db.scalar(
        select(Experiment).where(Experiment.project_id == ctx.project.id, Experiment.name == str(name))
    )
    if found is None:
        raise missing(f"no experiment named {name!r}")
    return found


def create_experiment(db: Session, ctx: ProjectContext, name: Any) -> Experiment:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise invalid(f"experiment name must be a non-empty string of at most {MAX_NAME} characters")
    taken = select(Experiment.id).where(Experiment.project_id == ctx.project.id, Experiment.name == name)
    if db.scalar(taken) is not None:
        raise MlflowError("RESOURCE_ALREADY_EXISTS", f"experiment {name!r} already exists")
    stamp = now_ms()
    experiment = Experiment(
        project_id=ctx.project.id,
        name=name,
        creation_time=stamp,
        last_update_time=stamp,
        created_by_id=ctx.principal.user_id,
    )
    db.add(experiment)
    db.flush()
    ctx.record(db, "experiment.create", target=f"experiment:{experiment.id}", details={"name": name})
    return experiment


def set_experiment_stage(db: Session, ctx: ProjectContext, experiment_id: Any, stage: str) -> None:
    """Delete or restore: the rows stay (MLflow's soft delete), runs included."""
    experiment = get_experiment(db, ctx, experiment_id)
    experiment.lifecycle_stage = stage
    experiment.last_update_time = now_ms()
    action = "experiment.delete" if stage == DELETED else "experiment.restore"
    ctx.record(db, action, target=f"experiment:{experiment.id}")


def rename_experiment(db: Session, ctx: ProjectContext, experiment_id: Any, new_name: Any) -> None:
    experiment = get_experiment(db, ctx, experiment_id)
    if not isinstance(new_name, str) or not new_name.strip() or len(new_name) > MAX_NAME:
        raise invalid("new_name must be a non-empty string")
    if new_name != experiment.name:
        taken = select(Experiment.id).where(
            Experiment.project_id == ctx.project.id, Experiment.name == new_name
        )
        if db.scalar(taken) is not None:
            raise MlflowError("RESOURCE_ALREADY_EXISTS", f"experiment {new_name!r} already exists")
        experiment.name = new_name
        experiment.last_update_time = now_ms()


def page_offset(token: Any) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(str(token).encode()))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError):
        pass
    raise invalid("invalid page_token")


def next_token(offset: int, limit: int, got: int) -> str | None:
    if got <= limit:
        return None
    return base64.urlsafe_b64encode(json.dumps({"offset": offset + limit}).encode()).decode()


def page_limit(value: Any, default: int) -> int:
    limit = as_int(value, "max_results", default)
    if not 1 <= limit <= MAX_RESULTS:
        raise invalid(f"max_results must be between 1 and {MAX_RESULTS}")
    return limit


def search_experiments(
    db: Session, ctx: ProjectContext, *, view_type: Any, max_results: Any, page_token: Any, name_filter: Any
) -> tuple[list[Experiment], str | None]:
    stages = VIEW_TYPES.get(str(view_type or "ACTIVE_ONLY"))
    if stages is None:
        raise invalid(f"invalid view_type {view_type!r}")
    limit, offset = page_limit(max_results, 1000), page_offset(page_token)
    query = select(Experiment).where(
        Experiment.project_id == ctx.project.id, Experiment.lifecycle_stage.in_(stages)
    )
    for clause in run_search.parse_experiment_filter(name_filter):
        query = query.where(clause)
    rows = list(db.scalars(query.order_by(Experiment.id.asc()).offset(offset).limit(limit + 1)))
    return rows[:limit], next_token(offset, limit, len(rows))


# --------------------------------------------------------------------------- runs


def _run_params(ctx: ProjectContext, run_id: Any) -> dict[str, Any]:
    if not isinstance(run_id, str) or not run_id:
        raise invalid("missing value for 'run_id'")
    return {"run_id": run_id, "project_id": ctx.project.id}


def _check_active(run_id: str, stage: str) -> None:
    if stage != ACTIVE:
        raise invalid(f"the run {run_id} must be in the 'active' state; it is {stage}")


def get_run(db: Session, ctx: ProjectContext, run_id: Any, *, for_update: bool = False) -> Run:
    found = db.scalar(_RUN_FOR_UPDATE if for_update else _RUN, _run_params(ctx, run_id))
    if found is None:
        raise missing(f"run {run_id!r} not found")
    return found


def active_run(db: Session, ctx: ProjectContext, run_id: Any) -> Run:
    """A run to write to, locked: on PostgreSQL, writers to one run (the client's async logging)
    take turns, so two first values of a metric cannot both insert its latest-value row."""
    run = get_run(db, ctx, run_id, for_update=True)
    _check_active(run.id, run.lifecycle_stage)
    return run


def existing_run_id(db: Session, ctx: ProjectContext, run_id: Any) -> str:
    """``get_run``'s check without loading the run: the id of a run of the caller's project."""
    found = db.scalar(_RUN_ID, _run_params(ctx, run_id))
    if found is None:
        raise missing(f"run {run_id!r} not found")
    return str(found)


def writable_run_id(db: Session, ctx: ProjectContext, run_id: Any) -> str:
    """``active_run``'s checks and lock without loading the run: all that logging values needs."""
    row = db.execute(_RUN_STAGE_FOR_UPDATE, _run_params(ctx, run_id)).first()
    if row is None:
        raise missing(f"run {run_id!r} not found")
    _check_active(row.id, row.lifecycle_stage)
    return str(row.id)


def create_run(
    db: Session, ctx: ProjectContext, *, experiment_id: Any, start_time: Any, run_name: Any, tags: Any
) -> Run:
    params = {"experiment_id": _experiment_id(experiment_id), "project_id": ctx.project.id}
    experiment = db.execute(_EXPERIMENT_STAGE, params).first()
    if experiment is None:
        raise missing(f"no experiment with id {experiment_id!r}")
    if experiment.lifecycle_stage != ACTIVE:
        raise invalid(f"experiment {experiment.id} is deleted; restore it before logging runs")
    pairs = key_values(tags, "tag", MAX_TAGS, MAX_TAG_VALUE)
    name = run_name if isinstance(run_name, str) and run_name else dict(pairs).get(RUN_NAME_TAG, "")
    if len(name) > 250:
        raise invalid("run_name must be at most 250 characters")
    if not name:
        name = f"run-{uuid.uuid4().hex[:8]}"
    run = Run(
        id=uuid.uuid4().hex,
        experiment_id=experiment.id,
        user_id=ctx.principal.user_id,
        name=name,
        status="RUNNING",
        start_time=as_int(start_time, "start_time", now_ms()),
        lifecycle_stage=ACTIVE,
    )
    db.add(run)
    db.flush()
    set_tags(db, run, [*pairs, (RUN_NAME_TAG, name)])
    return run


def update_run(db: Session, run: Run, *, status: Any, end_time: Any, run_name: Any) -> None:
    if status:
        if status not in RUN_STATUSES:
            raise invalid(f"invalid run status {status!r}")
        run.status = status
    if end_time not in (None, ""):
        run.end_time = as_int(end_time, "end_time")
    if isinstance(run_name, str) and run_name:
        if len(run_name) > 250:
            raise invalid("run_name must be at most 250 characters")
        run.name = run_name
        set_tags(db, run, [(RUN_NAME_TAG, run_name)])


def set_run_stage(db: Session, ctx: ProjectContext, run_id: Any, stage: str) -> None:
    run = get_run(db, ctx, run_id)
    run.lifecycle_stage = stage
    ctx.record(db, "run.delete" if stage == DELETED else "run.restore", target=f"run:{run.id}")


@dataclass
class RunPage:
    runs: list[Run]
    next_page_token: str | None


def search_runs(
    db: Session,
    ctx: ProjectContext,
    *,
    experiment_ids: Any,
    filter_string: Any,
    run_view_type: Any,
    max_results: Any,
    order_by: Any,
    page_token: Any,
) -> RunPage:
    """Filtered, ordered and paged in SQL, and only over experiments of the caller's project."""
    query, limit, offset = _search_statement(
        ctx,
        experiment_ids=experiment_ids,
        filter_string=filter_string,
        run_view_type=run_view_type,
        max_results=max_results,
        order_by=order_by,
        page_token=page_token,
    )
    rows = list(db.scalars(query))
    return RunPage(rows[:limit], next_token(offset, limit, len(rows)))


def search_run_rows(db: Session, ctx: ProjectContext, **search: Any) -> tuple[list[Any], str | None]:
    """``search_runs`` (same arguments) as rows with every column of ``Run``, for the API, which
    only reads them: a page of ORM objects costs more than the search itself."""
    query, limit, offset = _search_statement(ctx, **search)
    rows = list(db.execute(query.with_only_columns(*_RUN_COLUMNS)))
    return rows[:limit], next_token(offset, limit, len(rows))


def _search_statement(
    ctx: ProjectContext,
    *,
    experiment_ids: Any,
    filter_string: Any,
    run_view_type: Any,
    max_results: Any,
    order_by: Any,
    page_token: Any,
) -> tuple[Select[Any], int, int]:
    """The search's statement (fetching one run more than a page, to know if another follows),
    its page size and its offset."""
    stages = VIEW_TYPES.get(str(run_view_type or "ACTIVE_ONLY"))
    if stages is None:
        raise invalid(f"invalid run_view_type {run_view_type!r}")
    if not isinstance(experiment_ids, list) or not all(isinstance(e, str | int) for e in experiment_ids):
        raise invalid("experiment_ids must be a list of experiment ids")
    ids = [int(e) for e in experiment_ids if str(e).isdigit()]
    if order_by is not None and not (
        isinstance(order_by, list) and all(isinstance(o, str) for o in order_by)
    ):
        raise invalid("order_by must be a list of strings")
    if filter_string is not None and not isinstance(filter_string, str):
        raise invalid("filter must be a string")
    limit, offset = page_limit(max_results, 1000), page_offset(page_token)
    query = (
        select(Run)
        .join(Experiment, Experiment.id == Run.experiment_id)
        .where(
            Experiment.project_id == ctx.project.id,
            Run.experiment_id.in_(ids),
            Run.lifecycle_stage.in_(stages),
        )
    )
    condition = run_search.where(filter_string)
    if condition is not None:
        query = query.where(condition)
    query, ordering = run_search.order_by(order_by, query)
    return query.order_by(*ordering).offset(offset).limit(limit + 1), limit, offset


# --------------------------------------------------------------------------- logging


def key_values(items: Any, what: str, most: int, max_value: int) -> list[tuple[str, str]]:
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise invalid(f"{what}s must be a list of {{key, value}} objects")
    if len(items) > most:
        raise invalid(f"a batch may hold at most {most} {what}s, got {len(items)}")
    pairs = []
    for item in items:
        key = check_key(item.get("key"), what)
        value = item.get("value", "")
        value = "" if value is None else value if isinstance(value, str) else json.dumps(value)
        if len(value) > max_value:
            raise invalid(f"{what} '{key}' value is longer than {max_value} characters")
        pairs.append((key, value))
    return pairs


def _upsert(db: Session, table: Table, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """Insert rows, or overwrite the other columns of those whose ``keys`` exist: one statement
    (SQLite and PostgreSQL share ``ON CONFLICT ... DO UPDATE``), built once per dialect."""
    dialect = db.get_bind().dialect.name
    statement = _UPSERTS.get((dialect, table.name))
    if statement is None:
        base = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        others = {c.name: base.excluded[c.name] for c in table.columns if c.name not in keys}
        statement = _UPSERTS[(dialect, table.name)] = base.on_conflict_do_update(
            index_elements=list(keys), set_=others
        )
    db.execute(statement, rows)


def set_tags(db: Session, run: Run, pairs: Iterable[tuple[str, str]]) -> None:
    latest: dict[str, str] = {}
    for key, value in pairs:
        if key == USER_TAG:
            continue  # who ran it is the authenticated caller, shown from ``Run.user_id``
        latest[key] = value  # a key given twice keeps its last value
        if key == RUN_NAME_TAG and value and run.name != value:
            run.name = value[:250]
    if latest:
        rows = [{"run_id": run.id, "key": k, "value": v} for k, v in latest.items()]
        _upsert(db, RunTag.__table__, rows, ("run_id", "key"))  # type: ignore[arg-type]
