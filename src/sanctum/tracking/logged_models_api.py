"""MLflow 3's logged-model endpoints and a run's model inputs/outputs, as the stock client calls them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sanctum.api.deps import DbSession
from sanctum.tracking import artifacts, logged_models
from sanctum.tracking.api import Body, Reader, Writer

P = "/api/2.0/mlflow"
L = f"{P}/logged-models"
router = APIRouter(tags=["mlflow"])


def _one(db: DbSession, model: logged_models.LoggedModel) -> dict[str, Any]:
    return {"model": logged_models.models_json(db, [model])[0]}


@router.post(L)
def create_logged_model(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    return _one(db, logged_models.create(db, ctx, body))


@router.post(f"{L}/search")
def search_logged_models(ctx: Reader, db: DbSession, body: Body) -> dict[str, Any]:
    rows, token = logged_models.search(db, ctx, body)
    result: dict[str, Any] = {"models": logged_models.models_json(db, rows)}
    if token:
        result["next_page_token"] = token
    return result


@router.get(f"{L}/{{model_id}}")
def get_logged_model(model_id: str, ctx: Reader, db: DbSession, body: Body) -> dict[str, Any]:
    allow_deleted = str(body.get("allow_deleted", "")).lower() == "true"
    return _one(db, logged_models.get(db, ctx, model_id, allow_deleted=allow_deleted))


@router.patch(f"{L}/{{model_id}}")
def finalize_logged_model(model_id: str, ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    model = logged_models.finalize(db, ctx, model_id, body.get("status"))
    db.flush()
    return _one(db, model)


@router.delete(f"{L}/{{model_id}}")
def delete_logged_model(model_id: str, ctx: Writer, db: DbSession) -> dict[str, Any]:
    logged_models.delete(db, ctx, model_id)
    return {}


@router.patch(f"{L}/{{model_id}}/tags")
def set_logged_model_tags(model_id: str, ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    logged_models.set_tags(db, ctx, model_id, body.get("tags"))
    return {}


@router.delete(f"{L}/{{model_id}}/tags/{{tag_key:path}}")
def delete_logged_model_tag(model_id: str, tag_key: str, ctx: Writer, db: DbSession) -> dict[str, Any]:
    logged_models.delete_tag(db, ctx, model_id, tag_key)
    return {}


@router.post(f"{L}/{{model_id}}/params")
def log_logged_model_params(model_id: str, ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    logged_models.log_params(db, ctx, model_id, body.get("params"))
    return {}


@router.get(f"{L}/{{model_id}}/artifacts/directories")
def list_logged_model_artifacts(model_id: str, ctx: Reader, db: DbSession, body: Body) -> dict[str, Any]:
    model = logged_models.get(db, ctx, model_id)
    sub = body.get("artifact_directory_path") or ""
    raw = f"{model.experiment_id}/models/{model.id}/artifacts" + (
        f"/{artifacts.clean_path(sub)}" if sub else ""
    )
    files = artifacts.listing(db, artifacts.locate(db, ctx, raw))
    for f in files:
        f["path"] = f"{sub.rstrip('/')}/{f['path']}" if sub else f["path"]
    return {"root_uri": logged_models.artifact_uri(model), "files": files}


@router.post(f"{P}/runs/log-inputs")
def log_inputs(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    """Model inputs are recorded; dataset inputs are accepted but not yet kept."""
    logged_models.link(db, ctx, body.get("run_id"), body.get("models"), "input")
    return {}


@router.post(f"{P}/runs/outputs")
def log_outputs(ctx: Writer, db: DbSession, body: Body) -> dict[str, Any]:
    logged_models.link(db, ctx, body.get("run_id"), body.get("models"), "output")
    return {}
