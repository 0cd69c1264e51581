"""MLflow 3 logged models and a run's model inputs and outputs, scoped by project.

``mlflow.<flavor>.log_model`` creates a logged model, uploads its files to the model's own
artifact location, records it as an output of the run and finalizes it; ``runs:/<run>/<name>``
is resolved by searching the run's experiment for a model of that name. Every lookup joins
through the experiment to the caller's project, so another project's model id is 404.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, bindparam, exists, select
from sqlalchemy.orm import Session

from sanctum.projects.service import ProjectContext
from sanctum.tracking import search as run_search
from sanctum.tracking import service as svc
from sanctum.tracking.models import ACTIVE, DELETED, Experiment
from sanctum.tracking.registry_models import (
    FAILED,
    PENDING,
    READY,
    LoggedModel,
    LoggedModelParam,
    LoggedModelTag,
    RunModelLink,
)

STATUSES = {PENDING, READY, FAILED, "LOGGED_MODEL_STATUS_UNSPECIFIED"}
MAX_PARAMS_PER_CALL = 100
STRING_OPS = {"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"}


TagSpec = tuple[Any, Any, Any]  # (tag table, its owner column, the owner's id column)


def simple_filter(
    text: Any, columns: Mapping[str, Any], what: str, tags: TagSpec | None = None
) -> list[ColumnElement[bool]]:
    """Clauses joined by AND over a few string columns (and ``tags.<key>`` where ``tags`` is
    given), in SQL; anything else is refused: a filter that silently did not filter would return
    what the caller did not ask for."""
    if text is not None and not isinstance(text, str):
        raise svc.invalid("filter must be a string")
    conditions = []
    for part in run_search.split_and(text) if text and text.strip() else []:
        match = run_search._CLAUSE.match(part)
        ident = match["ident"] if match else ""
        head, dot, rest = ident.partition(".")
        is_tag = bool(tags and dot and head.lower() in {"tag", "tags"})
        field = ident.lower().removeprefix("attributes.").removeprefix("attribute.")
        if not match or not (is_tag or field in columns):
            raise svc.invalid(f"unsupported {what} filter {part!r}: use {', '.join(sorted(columns))}")
        op = re.sub(r"\s+", " ", match["op"].upper())
        if op not in STRING_OPS:
            raise svc.invalid(f"operator {op} is not allowed on {ident}")
        value = _value(op, match["value"].strip())
        if is_tag and tags is not None:
            table, owner, owned = tags
            key = rest[1:-1] if len(rest) >= 2 and rest[0] == rest[-1] and rest[0] in '`"' else rest
            negated = {"!=": "=", "NOT IN": "IN"}.get(op)
            matching = run_search._compare(table.value, negated or op, value)
            found = exists().where(owner == owned, table.key == key, matching)
            conditions.append(~found if negated else found)
        else:
            conditions.append(run_search._compare(columns[field], op, value))
    return conditions


def _value(op: str, raw: str) -> Any:
    if op not in {"IN", "NOT IN"}:
        return run_search._string(raw)
    if not (raw.startswith("(") and raw.endswith(")")):
        raise svc.invalid(f"{op} takes a parenthesised list of strings")
    items = re.findall(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""", raw[1:-1])
    return [run_search._string(item) for item in items]


def artifact_uri(model: LoggedModel) -> str:
    return f"mlflow-artifacts:/{model.experiment_id}/models/{model.id}/artifacts"


def get(db: Session, ctx: ProjectContext, model_id: Any, *, allow_deleted: bool = True) -> LoggedModel:
    if not isinstance(model_id, str) or not model_id:
        raise svc.invalid("missing value for 'model_id'")
    found = db.scalar(
        select(LoggedModel)
        .join(Experiment, Experiment.id == LoggedModel.experiment_id)
        .where(LoggedModel.id == model_id, Experiment.project_id == ctx.project.id)
    )
    if found is None or (not allow_deleted and found.lifecycle_stage != ACTIVE):
        raise svc.missing(f"logged model {model_id!r} not found")
    return found


def create(db: Session, ctx: ProjectContext, body: dict[str, Any]) -> LoggedModel:
    experiment = svc.get_experiment(db, ctx, body.get("experiment_id"))
    if experiment.lifecycle_stage != ACTIVE:
        raise svc.invalid(f"experiment {experiment.id} is deleted; restore it before logging models")
    run_id = body.get("source_run_id") or None
    if run_id is not None:
        run_id = svc.get_run(db, ctx, run_id).id
    name = body.get("name") or f"model-{uuid.uuid4().hex[:8]}"
    model_type = body.get("model_type") or ""
    if (
        not isinstance(name, str)
        or len(name) > 250
        or not isinstance(model_type, str)
        or len(model_type) > 250
    ):
        raise svc.invalid("name and model_type must be strings of at most 250 characters")
    params = svc.key_values(body.get("params"), "param", MAX_PARAMS_PER_CALL, svc.MAX_PARAM_VALUE)
    tags = svc.key_values(body.get("tags"), "tag", svc.MAX_TAGS, svc.MAX_TAG_VALUE)
    stamp = svc.now_ms()
    model = LoggedModel(
        id=f"m-{uuid.uuid4().hex}",
        experiment_id=experiment.id,
        name=name,
        source_run_id=run_id,
        model_type=model_type,
        status=PENDING,
        status_message="",
        lifecycle_stage=ACTIVE,
        creation_time=stamp,
        last_update_time=stamp,
        user_id=ctx.principal.user_id,
    )
    db.add(model)
    db.flush()
    for key, value in dict(params).items():
        db.add(LoggedModelParam(model_id=model.id, key=key, value=value))
    for key, value in dict(tags).items():
        db.add(LoggedModelTag(model_id=model.id, key=key, value=value))
    ctx.record(db, "logged_model.create", target=f"logged_model:{model.id}", details={"name": name})
    db.flush()
    return model


def finalize(db: Session, ctx: ProjectContext, model_id: Any, status: Any) -> LoggedModel:
    model = get(db, ctx, model_id, allow_deleted=False)
    if status not in STATUSES:
        raise svc.invalid(f"invalid logged model status {status!r}")
    model.status = status
    model.last_update_time = svc.now_ms()
    return model


def set_tags(db: Session, ctx: ProjectContext, model_id: Any, tags: Any) -> None:
    model = get(db, ctx, model_id, allow_deleted=False)
    for key, value in svc.key_values(tags, "tag", svc.MAX_TAGS, svc.MAX_TAG_VALUE):
        db.merge(LoggedModelTag(model_id=model.id, key=key, value=value))
    model.last_update_time = svc.now_ms()


def delete_tag(db: Session, ctx: ProjectContext, model_id: Any, key: str) -> None:
    model = get(db, ctx, model_id, allow_deleted=False)
    tag = db.get(LoggedModelTag, (model.id, key))
    if tag is None:
        raise svc.missing(f"no tag {key!r} on logged model {model.id}")
    db.delete(tag)


def log_params(db: Session, ctx: ProjectContext, model_id: Any, params: Any) -> None:
    model = get(db, ctx, model_id, allow_deleted=False)
    for key, value in svc.key_values(params, "param", MAX_PARAMS_PER_CALL, svc.MAX_PARAM_VALUE):
        db.merge(LoggedModelParam(model_id=model.id, key=key, value=value))


def delete(db: Session, ctx: ProjectContext, model_id: Any) -> None:
    model = get(db, ctx, model_id, allow_deleted=False)
    model.lifecycle_stage = DELETED
    ctx.record(db, "logged_model.delete", target=f"logged_model:{model.id}")


ORDER_FIELDS = {
    "name": LoggedModel.name,
    "creation_timestamp": LoggedModel.creation_time,
    "creation_time": LoggedModel.creation_time,
    "last_updated_timestamp": LoggedModel.last_update_time,
    "model_id": LoggedModel.id,
}


def search(db: Session, ctx: ProjectContext, body: dict[str, Any]) -> tuple[list[LoggedModel], str | None]:
    """Filtered and paged in SQL, over experiments of the caller's project only."""
    experiment_ids = body.get("experiment_ids") or []
    if not isinstance(experiment_ids, list):
        raise svc.invalid("experiment_ids must be a list of experiment ids")
    ids = [int(e) for e in experiment_ids if str(e).isdigit()]
    columns = {
        "name": LoggedModel.name,
        "model_id": LoggedModel.id,
        "source_run_id": LoggedModel.source_run_id,
        "status": LoggedModel.status,
        "model_type": LoggedModel.model_type,
    }
    limit, offset = svc.page_limit(body.get("max_results"), 100), svc.page_offset(body.get("page_token"))
    query = (
        select(LoggedModel)
        .join(Experiment, Experiment.id == LoggedModel.experiment_id)
        .where(
            Experiment.project_id == ctx.project.id,
            LoggedModel.experiment_id.in_(ids),
            LoggedModel.lifecycle_stage == ACTIVE,
        )
    )
    for condition in simple_filter(
        body.get("filter"), columns, "logged model", (LoggedModelTag, LoggedModelTag.model_id, LoggedModel.id)
    ):
        query = query.where(condition)
    ordering = []
    for item in body.get("order_by") or []:
        field = item.get("field_name") if isinstance(item, dict) else None
        if field not in ORDER_FIELDS:
            raise svc.invalid(f"cannot order logged models by {field!r}")
        column = ORDER_FIELDS[field]
        ordering.append(column.asc() if item.get("ascending", True) else column.desc())
    ordering += [LoggedModel.creation_time.desc(), LoggedModel.id.asc()]
    rows = list(db.scalars(query.order_by(*ordering).offset(offset).limit(limit + 1)))
    return rows[:limit], svc.next_token(offset, limit, len(rows))


def models_json(db: Session, models: list[LoggedModel]) -> list[dict[str, Any]]:
    """MLflow's LoggedModel message for many models in two queries (no per-model round trips)."""
    ids = [m.id for m in models]
    tags: dict[str, list[dict[str, str]]] = {i: [] for i in ids}
    params: dict[str, list[dict[str, str]]] = {i: [] for i in ids}
    if ids:
        for table, into in ((LoggedModelTag, tags), (LoggedModelParam, params)):
            for row in db.scalars(select(table).where(table.model_id.in_(ids)).order_by(table.key)):
                into[row.model_id].append({"key": row.key, "value": row.value})
    result = []
    for m in models:
        info: dict[str, Any] = {
            "model_id": m.id,
            "experiment_id": str(m.experiment_id),
            "name": m.name,
            "creation_timestamp_ms": m.creation_time,
            "last_updated_timestamp_ms": m.last_update_time,
            "artifact_uri": artifact_uri(m),
            "status": m.status,
            "model_type": m.model_type,
            "status_message": m.status_message,
            "tags": tags[m.id],
        }
        if m.source_run_id:
            info["source_run_id"] = m.source_run_id
        if m.user_id is not None:
            info["creator_id"] = m.user_id
        result.append({"info": info, "data": {"params": params[m.id], "metrics": []}})
    return result


# --------------------------------------------------------------------------- run inputs and outputs


def link(db: Session, ctx: ProjectContext, run_id: Any, models: Any, direction: str) -> None:
    """Record models a run used or produced; each must be a model of the caller's project."""
    run = svc.active_run(db, ctx, run_id)
    if models is None:
        return
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise svc.invalid("models must be a list of {model_id} objects")
    for item in models:
        model = get(db, ctx, item.get("model_id"))
        step = svc.as_int(item.get("step"), "step", 0)
        found = db.get(RunModelLink, (run.id, model.id, direction))
        if found is None:
            db.add(RunModelLink(run_id=run.id, model_id=model.id, direction=direction, step=step))
        else:
            found.step = step


_links = RunModelLink.__table__
_RUN_LINKS = (  # built once: every run answer asks for it, usually to find nothing
    select(_links.c.run_id, _links.c.model_id, _links.c.direction, _links.c.step)
    .where(_links.c.run_id.in_(bindparam("run_ids", expanding=True)))
    .order_by(_links.c.model_id)
)


def run_io(db: Session, run_ids: list[str]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Each run's (inputs, outputs) as MLflow's RunInputs and RunOutputs, in one query."""
    result: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {r: ({}, {}) for r in run_ids}
    if not run_ids:
        return result
    for row in db.execute(_RUN_LINKS, {"run_ids": run_ids}):
        inputs, outputs = result[row.run_id]
        if row.direction == "input":
            inputs.setdefault("model_inputs", []).append({"model_id": row.model_id})
        else:
            outputs.setdefault("model_outputs", []).append({"model_id": row.model_id, "step": row.step})
    return result
