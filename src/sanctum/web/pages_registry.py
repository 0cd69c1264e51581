"""A project's model registry in the browser: its registered models, and one model with its
versions (each linked to the run it came from), aliases and tags.

Read through the registry service (names are looked up per project, so another project's model
is 404) and described with the registry API's own JSON builders, so a page and
``MlflowClient().search_model_versions`` agree. EXPERIMENTS_READ, like the runs the versions
point at.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.api.deps import DbSession
from sanctum.errors import NotFound
from sanctum.projects.service import ProjectContext
from sanctum.tracking import MlflowError
from sanctum.tracking import registry as reg
from sanctum.tracking.models import Experiment, Run
from sanctum.tracking.registry_api import models_json, versions_json
from sanctum.tracking.registry_models import LoggedModel, ModelVersion
from sanctum.web.pages_tracking import page_error, plain, tracking_page
from sanctum.web.session import ProjectPage

router = APIRouter(include_in_schema=False)

Reader = Annotated[ProjectContext, Depends(ProjectPage(Permission.EXPERIMENTS_READ))]

LIST_LIMIT = 500
VERSIONS_LIMIT = 500


@router.get("/projects/{project}/models")
def models_page(request: Request, db: DbSession, ctx: Reader) -> Response:
    try:
        models, _ = reg.search_models(db, ctx, {"max_results": LIST_LIMIT, "order_by": ["name ASC"]})
    except MlflowError as exc:
        raise page_error(exc) from None
    counts = dict(
        db.execute(
            select(ModelVersion.registered_model_id, func.count())
            .where(ModelVersion.registered_model_id.in_([m.id for m in models]))
            .group_by(ModelVersion.registered_model_id)
        ).all()
    )
    return tracking_page(
        request,
        "models.html",
        ctx,
        models=list(zip(models_json(db, models), [counts.get(m.id, 0) for m in models], strict=True)),
        limit=LIST_LIMIT,
    )


def source_runs(db: Session, project_id: int, versions: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Version number → (run id, run name) of the run each version came from: its ``run_id``, the
    run in a ``runs:/<run>/...`` source, or the run that logged its model; only runs of this
    project (a version is checked when made, and a run deleted since simply has no link)."""
    model_runs = dict(
        db.execute(
            select(LoggedModel.id, LoggedModel.source_run_id).where(
                LoggedModel.id.in_([v["model_id"] for v in versions if v.get("model_id")])
            )
        ).all()
    )
    wanted: dict[str, str] = {}
    for v in versions:
        run_id = v.get("run_id") or model_runs.get(v.get("model_id") or "")
        if not run_id and v["source"].startswith("runs:/"):
            run_id = v["source"].removeprefix("runs:/").split("/", 1)[0]
        if run_id:
            wanted[v["version"]] = run_id
    names = dict(
        db.execute(
            select(Run.id, Run.name)
            .join(Experiment, Experiment.id == Run.experiment_id)
            .where(Experiment.project_id == project_id, Run.id.in_(set(wanted.values())))
        ).all()
    )
    return {number: (run_id, names[run_id]) for number, run_id in wanted.items() if run_id in names}


@router.get("/projects/{project}/models/{name}")
def model_page(request: Request, db: DbSession, ctx: Reader, name: str) -> Response:
    if not plain(name):
        raise NotFound("registered model not found")
    try:
        model = reg.get_model(db, ctx, name)
    except MlflowError as exc:
        raise page_error(exc) from None
    rows = db.scalars(
        select(ModelVersion)
        .where(ModelVersion.registered_model_id == model.id)
        .order_by(ModelVersion.version.desc())
        .limit(VERSIONS_LIMIT)
    )
    versions = versions_json(db, [(v, model.name) for v in rows])
    described: dict[str, Any] = models_json(db, [model])[0]
    return tracking_page(
        request,
        "model.html",
        ctx,
        model=described,
        versions=versions,
        runs=source_runs(db, ctx.project.id, versions),
        limit=VERSIONS_LIMIT,
    )
