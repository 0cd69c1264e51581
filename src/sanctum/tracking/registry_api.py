"""MLflow's model registry endpoints (``model_registry.proto``), per project.

Reads need EXPERIMENTS_READ, every change EXPERIMENTS_WRITE, like the runs the versions point at.
Stage transitions (deprecated in MLflow) are not offered; aliases replace them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sanctum.api.deps import DbSession
from sanctum.db.models import User
from sanctum.tracking import registry as reg
from sanctum.tracking.api import Body, Reader, Writer
from sanctum.tracking.registry_models import (
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelAlias,
    RegisteredModelTag,
)

R = "/api/2.0/mlflow/registered-models"
V = "/api/2.0/mlflow/model-versions"
router = APIRouter(tags=["mlflow"])


def _emails(db: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    return dict(db.execute(select(User.id, User.email).where(User.id.in_(wanted))).all()) if wanted else {}  # type: ignore[arg-type]


def versions_json(db: Session, rows: list[tuple[ModelVersion, str]]) -> list[dict[str, Any]]:
    ids = [v.id for v, _ in rows]
    tags: dict[int, list[dict[str, str]]] = {i: [] for i in ids}
    aliases: dict[tuple[int, int], list[str]] = {}
    if ids:
        for t in db.scalars(select(ModelVersionTag).where(ModelVersionTag.model_version_id.in_(ids))):
            tags[t.model_version_id].append({"key": t.key, "value": t.value})
        owners = {v.registered_model_id for v, _ in rows}
        for a in db.scalars(
            select(RegisteredModelAlias).where(RegisteredModelAlias.registered_model_id.in_(owners))
        ):
            aliases.setdefault((a.registered_model_id, a.version), []).append(a.alias)
    emails = _emails(db, {v.user_id for v, _ in rows})
    result = []
    for v, name in rows:
        item: dict[str, Any] = {
            "name": name,
            "version": str(v.version),
            "creation_timestamp": v.creation_time,
            "last_updated_timestamp": v.last_update_time,
            "user_id": emails.get(v.user_id or -1, ""),
            "current_stage": v.current_stage,
            "description": v.description,
            "source": v.source,
            "status": "READY",
            "tags": tags[v.id],
            "aliases": sorted(aliases.get((v.registered_model_id, v.version), [])),
        }
        if v.run_id:
            item["run_id"] = v.run_id
        if v.model_id:
            item["model_id"] = v.model_id
        result.append(item)
    return result


def models_json(db: Session, models: list[RegisteredModel]) -> list[dict[str, Any]]:
    ids = [m.id for m in models]
    tags: dict[int, list[dict[str, str]]] = {i: [] for i in ids}
    aliases: dict[int, list[dict[str, str]]] = {i: [] for i in ids}
    latest: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        for t in db.scalars(
            select(RegisteredModelTag).where(RegisteredModelTag.registered_model_id.in_(ids))
        ):
            tags[t.registered_model_id].append({"key": t.key, "value": t.value})
        query = select(RegisteredModelAlias).where(RegisteredModelAlias.registered_model_id.in_(ids))
        for a in db.scalars(query.order_by(RegisteredModelAlias.alias)):
            aliases[a.registered_model_id].append({"alias": a.alias, "version": str(a.version)})
        top = (
            select(ModelVersion.registered_model_id.label("owner"), func.max(ModelVersion.version).label("n"))
            .where(ModelVersion.registered_model_id.in_(ids))
            .group_by(ModelVersion.registered_model_id)
            .subquery()
        )
        newest = select(ModelVersion).join(
            top, (top.c.owner == ModelVersion.registered_model_id) & (top.c.n == ModelVersion.version)
        )
        names = {m.id: m.name for m in models}
        found = [(v, names[v.registered_model_id]) for v in db.scalars(newest)]
        for v, item in zip((v for v, _ in found), versions_json(db, found), strict=True):
            latest[v.registered_model_id].append(item)
    emails = _emails(db, {m.user_id for m in models})
    return [
        {
            "name": m.name,
            "creation_timestamp": m.creation_time,
            "last_updated_timestamp": m.last_update_time,
            "user_id": emails.get(m.user_id or -1, ""),
            "description": m.description,
            "latest_versions": latest[m.id],
            "tags": tags[m.id],
            "aliases": aliases[m.id],
        }
        for m in models
    ]


def _model(db: Session, model: RegisteredModel) -> dict[str, Any]:
    db.flush()
    return {"registered_model": models_json(db, [model])[0]}


def _version(db: Session, version: ModelVersion, name: str) -> dict[str, Any]:
    db.flush()
    return {"model_version": versions_json(db, [(version, name)])[0]}


@router.post(f"{R}/create")
def create_registered_model(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    return _model(db, reg.create_model(db, ctx, body))


@router.get(f"{R}/get")
def get_registered_model(ctx: Reader, db: DbSession, body: Body) -> dict[str, Any]:
    return _model(db, reg.get_model(db, ctx, body.get("name")))


@router.post(f"{R}/rename")
def rename_registered_model(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    return _model(db, reg.rename_model(db, ctx, body.get("name"), body.get("new_name")))


@router.patch(f"{R}/update")
def update_registered_model(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    model = reg.get_model(db, ctx, body.get("name"))
    if body.get("description") is not None:
        model.description = str(body["description"])
        model.last_update_time = reg.svc.now_ms()
    return _model(db, model)


@router.delete(f"{R}/delete")
def delete_registered_model(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    reg.delete_model(db, ctx, body.get("name"))
    return {}


@router.get(f"{R}/search", operation_id="search_registered_models_get")
@router.post(f"{R}/search", operation_id="search_registered_models")
def search_registered_models(ctx: Reader, db: DbSession, body: Body) -> dict[str, Any]:
    rows, token = reg.search_models(db, ctx, body)
    result: dict[str, Any] = {"registered_models": models_json(db, rows)}
    if token:
        result["next_page_token"] = token
    return result


@router.post(f"{R}/get-latest-versions", operation_id="get_latest_versions")
@router.get(f"{R}/get-latest-versions", operation_id="get_latest_versions_get")
def get_latest_versions(ctx: Reader, db: DbSession, body: Body) -> dict[str, Any]:
    name = body.get("name")
    versions = reg.latest_versions(db, ctx, name, body.get("stages"))
    return {"model_versions": versions_json(db, [(v, str(name)) for v in versions])}


@router.post(f"{R}/set-tag")
def set_registered_model_tag(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    reg.set_model_tag(db, ctx, body.get("name"), body.get("key"), body.get("value"))
    return {}


@router.delete(f"{R}/delete-tag")
def delete_registered_model_tag(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    reg.delete_model_tag(db, ctx, body.get("name"), body.get("key"))
    return {}


@router.post(f"{R}/alias")
def set_alias(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    reg.set_alias(db, ctx, body.get("name"), body.get("alias"), body.get("version"))
    return {}


@router.delete(f"{R}/alias")
def delete_alias(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    reg.delete_alias(db, ctx, body.get("name"), body.get("alias"))
    return {}


@router.get(f"{R}/alias")
def get_version_by_alias(ctx: Reader, db: DbSession, body: Body) -> dict[str, Any]:
    version = reg.version_by_alias(db, ctx, body.get("name"), body.get("alias"))
    return _version(db, version, str(body.get("name")))


# --------------------------------------------------------------------------- versions


@router.post(f"{V}/create")
def create_model_version(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    return _version(db, reg.create_version(db, ctx, body), str(body.get("name")))


@router.get(f"{V}/get")
def get_model_version(ctx: Reader, db: DbSession, body: Body) -> dict[str, Any]:
    version = reg.get_version(db, ctx, body.get("name"), body.get("version"))
    return _version(db, version, str(body.get("name")))


@router.patch(f"{V}/update")
def update_model_version(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    version = reg.update_version(db, ctx, body.get("name"), body.get("version"), body.get("description"))
    return _version(db, version, str(body.get("name")))


@router.delete(f"{V}/delete")
def delete_model_version(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    reg.delete_version(db, ctx, body.get("name"), body.get("version"))
    return {}


@router.get(f"{V}/search", operation_id="search_model_versions_get")
@router.post(f"{V}/search", operation_id="search_model_versions")
def search_model_versions(ctx: Reader, db: DbSession, body: Body) -> dict[str, Any]:
    rows, token = reg.search_versions(db, ctx, body)
    result: dict[str, Any] = {"model_versions": versions_json(db, rows)}
    if token:
        result["next_page_token"] = token
    return result


@router.get(f"{V}/get-download-uri")
def get_download_uri(ctx: Reader, db: DbSession, body: Body) -> dict[str, Any]:
    version = reg.get_version(db, ctx, body.get("name"), body.get("version"))
    return {"artifact_uri": reg.download_uri(db, ctx, version)}


@router.post(f"{V}/set-tag")
def set_model_version_tag(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    reg.set_version_tag(db, ctx, body)
    return {}


@router.delete(f"{V}/delete-tag")
def delete_model_version_tag(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    reg.delete_version_tag(db, ctx, body)
    return {}
