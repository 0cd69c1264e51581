"""The model registry of one project: registered models, their versions, tags and aliases.

Names are unique per project, not per instance, and every lookup is by (project, name): another
project's model is "does not exist", whatever its name. A version's source must be a run, a
logged model or an artifact path of the same project, checked when the version is created, so a
registry entry can never become a way to reach another project's artifacts.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sanctum.projects.service import ProjectContext
from sanctum.tracking import MlflowError, artifacts, logged_models
from sanctum.tracking import service as svc
from sanctum.tracking.registry_models import (
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelAlias,
    RegisteredModelTag,
)

MAX_NAME = 256
_ALIAS = re.compile(r"^[\w\-]{1,255}$")
_ORDER = re.compile(r"^\s*(?P<field>[\w.]+)(?:\s+(?P<dir>ASC|DESC))?\s*$", re.IGNORECASE)


def _name(value: Any, what: str = "name") -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise svc.invalid(
            f"registered model {what} must be a non-empty string of at most {MAX_NAME} characters"
        )
    if "/" in value or ":" in value or "@" in value or "\x00" in value:
        raise svc.invalid(f"registered model {what} {value!r} may not contain '/', ':', '@' or NUL")
    return value


def get_model(db: Session, ctx: ProjectContext, name: Any, *, for_update: bool = False) -> RegisteredModel:
    if not isinstance(name, str) or not name:
        raise svc.invalid("missing value for 'name'")
    query = select(RegisteredModel).where(
        RegisteredModel.project_id == ctx.project.id, RegisteredModel.name == name
    )
    if for_update:
        query = query.with_for_update()
    found = db.scalar(query)
    if found is None:
        raise svc.missing(f"registered model {name!r} not found")
    return found


def create_model(db: Session, ctx: ProjectContext, body: dict[str, Any]) -> RegisteredModel:
    name = _name(body.get("name"))
    taken = select(RegisteredModel.id).where(
        RegisteredModel.project_id == ctx.project.id, RegisteredModel.name == name
    )
    if db.scalar(taken) is not None:
        raise MlflowError("RESOURCE_ALREADY_EXISTS", f"registered model {name!r} already exists")
    tags = svc.key_values(body.get("tags"), "tag", svc.MAX_TAGS, svc.MAX_TAG_VALUE)
    stamp = svc.now_ms()
    model = RegisteredModel(
        project_id=ctx.project.id,
        name=name,
        description=str(body.get("description") or ""),
        creation_time=stamp,
        last_update_time=stamp,
        last_version=0,
        user_id=ctx.principal.user_id,
    )
    db.add(model)
    db.flush()
    for key, value in dict(tags).items():
        db.add(RegisteredModelTag(registered_model_id=model.id, key=key, value=value))
    ctx.record(db, "registered_model.create", target=f"registered_model:{name}")
    return model


def rename_model(db: Session, ctx: ProjectContext, name: Any, new_name: Any) -> RegisteredModel:
    model = get_model(db, ctx, name)
    new_name = _name(new_name, "new_name")
    if new_name != model.name:
        taken = select(RegisteredModel.id).where(
            RegisteredModel.project_id == ctx.project.id, RegisteredModel.name == new_name
        )
        if db.scalar(taken) is not None:
            raise MlflowError("RESOURCE_ALREADY_EXISTS", f"registered model {new_name!r} already exists")
        ctx.record(
            db, "registered_model.rename", target=f"registered_model:{model.name}", details={"to": new_name}
        )
        model.name = new_name
        model.last_update_time = svc.now_ms()
    return model


def delete_model(db: Session, ctx: ProjectContext, name: Any) -> None:
    model = get_model(db, ctx, name)
    ctx.record(db, "registered_model.delete", target=f"registered_model:{model.name}")
    db.delete(model)


def set_model_tag(db: Session, ctx: ProjectContext, name: Any, key: Any, value: Any) -> None:
    model = get_model(db, ctx, name)
    for k, v in svc.key_values([{"key": key, "value": value}], "tag", 1, svc.MAX_TAG_VALUE):
        db.merge(RegisteredModelTag(registered_model_id=model.id, key=k, value=v))


def delete_model_tag(db: Session, ctx: ProjectContext, name: Any, key: Any) -> None:
    tag = db.get(RegisteredModelTag, (get_model(db, ctx, name).id, str(key)))
    if tag is None:
        raise svc.missing(f"no tag {key!r} on registered model {name!r}")
    db.delete(tag)


def search_models(
    db: Session, ctx: ProjectContext, body: dict[str, Any]
) -> tuple[list[RegisteredModel], str | None]:
    limit, offset = svc.page_limit(body.get("max_results"), 100), svc.page_offset(body.get("page_token"))
    query = select(RegisteredModel).where(RegisteredModel.project_id == ctx.project.id)
    for condition in logged_models.simple_filter(
        body.get("filter"),
        {"name": RegisteredModel.name},
        "registered model",
        (RegisteredModelTag, RegisteredModelTag.registered_model_id, RegisteredModel.id),
    ):
        query = query.where(condition)
    fields = {
        "name": RegisteredModel.name,
        "timestamp": RegisteredModel.last_update_time,
        "last_updated_timestamp": RegisteredModel.last_update_time,
        "creation_timestamp": RegisteredModel.creation_time,
    }
    ordering = [*_ordering(body.get("order_by"), fields), RegisteredModel.name.asc()]
    rows = list(db.scalars(query.order_by(*ordering).offset(offset).limit(limit + 1)))
    return rows[:limit], svc.next_token(offset, limit, len(rows))


def _ordering(order_by: Any, fields: dict[str, Any]) -> list[Any]:
    items = [order_by] if isinstance(order_by, str) else order_by or []
    result = []
    for item in items:
        match = _ORDER.match(item) if isinstance(item, str) else None
        field = match["field"].removeprefix("attributes.") if match else None
        if match is None or field not in fields:
            raise svc.invalid(f"cannot order by {item!r}: use {', '.join(sorted(fields))}")
        column = fields[field]
        result.append(column.desc() if (match["dir"] or "").upper() == "DESC" else column.asc())
    return result


# --------------------------------------------------------------------------- versions


def get_version(db: Session, ctx: ProjectContext, name: Any, version: Any) -> ModelVersion:
    model = get_model(db, ctx, name)
    number = svc.as_int(version, "version")
    found = db.scalar(
        select(ModelVersion).where(
            ModelVersion.registered_model_id == model.id, ModelVersion.version == number
        )
    )
    if found is None:
        raise svc.missing(f"model version {version!r} of {name!r} not found")
    return found


def _check_source(
    db: Session, ctx: ProjectContext, source: Any, run_id: Any, model_id: Any
) -> tuple[str | None, str | None]:
    """The run and logged model a version points at, all of the caller's project (else 404)."""
    if not isinstance(source, str) or not source:
        raise svc.invalid("missing value for 'source'")
    run = svc.get_run(db, ctx, run_id).id if run_id else None
    model = logged_models.get(db, ctx, model_id).id if model_id else None
    if source.startswith("models:/") and "/" not in source.removeprefix("models:/"):
        model = logged_models.get(db, ctx, source.removeprefix("models:/")).id
    elif source.startswith("runs:/"):
        svc.get_run(db, ctx, source.removeprefix("runs:/").split("/", 1)[0])
    elif source.startswith("mlflow-artifacts:/") and not source.startswith("mlflow-artifacts://"):
        artifacts.locate(db, ctx, source.removeprefix("mlflow-artifacts:/"))
    else:
        raise svc.invalid(
            "a model version's source must be models:/<model_id>, runs:/<run_id>/<path> or "
            "mlflow-artifacts:/<experiment>/... of this project"
        )
    return run, model


def create_version(db: Session, ctx: ProjectContext, body: dict[str, Any]) -> ModelVersion:
    model = get_model(db, ctx, body.get("name"), for_update=True)
    run_id, model_id = _check_source(db, ctx, body.get("source"), body.get("run_id"), body.get("model_id"))
    tags = svc.key_values(body.get("tags"), "tag", svc.MAX_TAGS, svc.MAX_TAG_VALUE)
    stamp = svc.now_ms()
    model.last_version += 1
    model.last_update_time = stamp
    version = ModelVersion(
        registered_model_id=model.id,
        version=model.last_version,
        source=body["source"],
        run_id=run_id,
        model_id=model_id,
        description=str(body.get("description") or ""),
        current_stage="None",
        creation_time=stamp,
        last_update_time=stamp,
        user_id=ctx.principal.user_id,
    )
    db.add(version)
    db.flush()
    for key, value in dict(tags).items():
        db.add(ModelVersionTag(model_version_id=version.id, key=key, value=value))
    ctx.record(
        db,
        "model_version.create",
        target=f"registered_model:{model.name}",
        details={"version": version.version, "source": version.source[:300]},
    )
    return version


def update_version(
    db: Session, ctx: ProjectContext, name: Any, version: Any, description: Any
) -> ModelVersion:
    found = get_version(db, ctx, name, version)
    if description is not None:
        found.description = str(description)
        found.last_update_time = svc.now_ms()
    return found


def delete_version(db: Session, ctx: ProjectContext, name: Any, version: Any) -> None:
    found = get_version(db, ctx, name, version)
    ctx.record(
        db, "model_version.delete", target=f"registered_model:{name}", details={"version": found.version}
    )
    for alias in db.scalars(
        select(RegisteredModelAlias).where(
            RegisteredModelAlias.registered_model_id == found.registered_model_id,
            RegisteredModelAlias.version == found.version,
        )
    ):
        db.delete(alias)
    db.delete(found)


def set_version_tag(db: Session, ctx: ProjectContext, body: dict[str, Any]) -> None:
    found = get_version(db, ctx, body.get("name"), body.get("version"))
    pairs = svc.key_values(
        [{"key": body.get("key"), "value": body.get("value")}], "tag", 1, svc.MAX_TAG_VALUE
    )
    for k, v in pairs:
        db.merge(ModelVersionTag(model_version_id=found.id, key=k, value=v))


def delete_version_tag(db: Session, ctx: ProjectContext, body: dict[str, Any]) -> None:
    found = get_version(db, ctx, body.get("name"), body.get("version"))
    tag = db.get(ModelVersionTag, (found.id, str(body.get("key"))))
    if tag is None:
        raise svc.missing(f"no tag {body.get('key')!r} on this model version")
    db.delete(tag)


def latest_versions(db: Session, ctx: ProjectContext, name: Any, stages: Any) -> list[ModelVersion]:
    """The newest version per stage (stages are MLflow's legacy; every version here is "None")."""
    model = get_model(db, ctx, name)
    query = select(ModelVersion.current_stage, func.max(ModelVersion.version)).where(
        ModelVersion.registered_model_id == model.id
    )
    if stages:
        wanted = [str(s).lower() for s in (stages if isinstance(stages, list) else [stages])]
        query = query.where(func.lower(ModelVersion.current_stage).in_(wanted))
    numbers = [n for _, n in db.execute(query.group_by(ModelVersion.current_stage))]
    if not numbers:
        return []
    return list(
        db.scalars(
            select(ModelVersion).where(
                ModelVersion.registered_model_id == model.id, ModelVersion.version.in_(numbers)
            )
        )
    )


def search_versions(
    db: Session, ctx: ProjectContext, body: dict[str, Any]
) -> tuple[list[tuple[ModelVersion, str]], str | None]:
    limit, offset = svc.page_limit(body.get("max_results"), 10000), svc.page_offset(body.get("page_token"))
    query = (
        select(ModelVersion, RegisteredModel.name)
        .join(RegisteredModel, RegisteredModel.id == ModelVersion.registered_model_id)
        .where(RegisteredModel.project_id == ctx.project.id)
    )
    columns = {
        "name": RegisteredModel.name,
        "run_id": ModelVersion.run_id,
        "source_path": ModelVersion.source,
        "model_id": ModelVersion.model_id,
    }
    for condition in logged_models.simple_filter(
        body.get("filter"),
        columns,
        "model version",
        (ModelVersionTag, ModelVersionTag.model_version_id, ModelVersion.id),
    ):
        query = query.where(condition)
    fields = {
        "name": RegisteredModel.name,
        "version_number": ModelVersion.version,
        "creation_timestamp": ModelVersion.creation_time,
        "last_updated_timestamp": ModelVersion.last_update_time,
    }
    ordering = [
        *_ordering(body.get("order_by"), fields),
        RegisteredModel.name.asc(),
        ModelVersion.version.desc(),
    ]
    rows = [tuple(r) for r in db.execute(query.order_by(*ordering).offset(offset).limit(limit + 1))]
    return rows[:limit], svc.next_token(offset, limit, len(rows))  # type: ignore[return-value]


def download_uri(db: Session, ctx: ProjectContext, version: ModelVersion) -> str:
    """Where the client fetches a version's files: always this server's artifact proxy."""
    if version.model_id:
        return logged_models.artifact_uri(logged_models.get(db, ctx, version.model_id))
    if version.source.startswith("runs:/"):
        run_id, _, path = version.source.removeprefix("runs:/").partition("/")
        run = svc.get_run(db, ctx, run_id)
        return f"mlflow-artifacts:/{run.experiment_id}/{run.id}/artifacts" + (f"/{path}" if path else "")
    return version.source


# --------------------------------------------------------------------------- aliases


def set_alias(db: Session, ctx: ProjectContext, name: Any, alias: Any, version: Any) -> None:
    if not isinstance(alias, str) or not _ALIAS.match(alias) or alias.lower() == "latest":
        raise svc.invalid(f"invalid alias {alias!r}: letters, digits, '_' and '-', not 'latest'")
    if re.fullmatch(r"[vV]\d+", alias):
        raise svc.invalid(f"invalid alias {alias!r}: 'v<number>' is reserved for versions")
    found = get_version(db, ctx, name, version)
    db.merge(
        RegisteredModelAlias(
            registered_model_id=found.registered_model_id, alias=alias, version=found.version
        )
    )
    ctx.record(
        db, "registered_model.alias", target=f"registered_model:{name}", details={alias: found.version}
    )


def delete_alias(db: Session, ctx: ProjectContext, name: Any, alias: Any) -> None:
    row = db.get(RegisteredModelAlias, (get_model(db, ctx, name).id, str(alias)))
    if row is None:
        raise svc.missing(f"registered model {name!r} has no alias {alias!r}")
    db.delete(row)
    ctx.record(db, "registered_model.alias", target=f"registered_model:{name}", details={str(alias): None})


def version_by_alias(db: Session, ctx: ProjectContext, name: Any, alias: Any) -> ModelVersion:
    model = get_model(db, ctx, name)
    number = db.scalar(
        select(RegisteredModelAlias.version).where(
            RegisteredModelAlias.registered_model_id == model.id, RegisteredModelAlias.alias == str(alias)
        )
    )
    if number is None:
        raise svc.missing(f"registered model {name!r} has no alias {alias!r}")
    return get_version(db, ctx, model.name, number)
