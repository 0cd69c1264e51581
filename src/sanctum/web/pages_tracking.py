"""A project's experiments in the browser: the experiments, the runs table of one experiment
(sortable, filterable with MLflow's syntax, paged), one run (params, tags, metric charts,
artifacts, child runs, logged models) and artifact downloads.

Every page needs EXPERIMENTS_READ in the project (every role has it: output checkers and auditors
review runs); a non-member gets 404, and so does another project's experiment or run id. The
pages read through the tracking API's own loaders and search code, so a page shows what
``mlflow.search_runs`` returns for the same filter. Artifact downloads go through the API's own
download function: the same airlock rule (``artifacts.may_download``) and the same audit event.

The tracking services raise MLflow's errors (``MlflowError``), which the app answers in MLflow's
JSON shape; here they are turned into the platform's errors so the browser gets a page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.api.deps import DbSession, RuntimeDep
from sanctum.db.models import User
from sanctum.errors import Denied, NotFound, SanctumError
from sanctum.projects.service import ProjectContext
from sanctum.tracking import MlflowError, artifacts_api, runlog
from sanctum.tracking import artifacts as artifact_store
from sanctum.tracking import service as svc
from sanctum.tracking.models import Experiment, Run
from sanctum.web import charts, run_detail, runs_table
from sanctum.web.pages_datasets import _page as project_page
from sanctum.web.pages_jobs import duration
from sanctum.web.runs_table import PAGE_SIZES, STATES, Direction, RunsPage, RunsView, Show, Sort
from sanctum.web.session import ProjectPage

router = APIRouter(include_in_schema=False)

Reader = Annotated[ProjectContext, Depends(ProjectPage(Permission.EXPERIMENTS_READ))]

FilterField = Annotated[str, Query(alias="filter", max_length=5000)]
BAD_VALUE = (
    "this filter cannot be used: the database refused one of its values "
    "(a LIKE pattern cannot end with a backslash)"
)


def moment(ms: int | None) -> datetime | None:
    """MLflow's epoch milliseconds as a time the templates' ``when`` filter formats."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def clock(ms: int | None) -> str:
    """A run's start or end to the second (runs of a search are seconds apart)."""
    found = moment(ms)
    return "—" if found is None else found.strftime("%Y-%m-%d %H:%M:%S UTC")


def page_error(exc: MlflowError) -> SanctumError:
    """An MLflow error as the platform's, so the browser gets an error page, not JSON."""
    if exc.status == 404:
        return NotFound(exc.message)
    if exc.status == 403:
        return Denied(exc.message, code="airlock")
    return SanctumError(exc.message, code="invalid_request")


def tracking_page(
    request: Request, name: str, ctx: ProjectContext, *, status: int = 200, **context: Any
) -> Response:
    """A project page with the helpers the tracking templates share."""
    return project_page(
        request,
        name,
        ctx,
        status=status,
        duration=duration,
        moment=moment,
        clock=clock,
        number=charts.number,
        **context,
    )


def plain(text: str) -> bool:
    """No control characters: an id or name from a URL that has one cannot exist (and NUL
    would not even reach PostgreSQL, which refuses it in text)."""
    return not any(ord(c) < 32 or ord(c) == 127 for c in text)


def load_experiment(db: Session, ctx: ProjectContext, experiment_id: str) -> Experiment:
    try:
        return svc.get_experiment(db, ctx, experiment_id)
    except MlflowError as exc:
        raise page_error(exc) from None


def load_run(db: Session, ctx: ProjectContext, run_id: str) -> Run:
    if not plain(run_id):
        raise NotFound("run not found")
    try:
        return svc.get_run(db, ctx, run_id)
    except MlflowError as exc:
        raise page_error(exc) from None


def _email(db: Session, user_id: int | None) -> str:
    found = db.scalar(select(User.email).where(User.id == user_id)) if user_id is not None else None
    return found or "(deleted user)"


# --------------------------------------------------------------------------- experiments


@router.get("/projects/{project}/experiments")
def experiments_page(request: Request, db: DbSession, ctx: Reader) -> Response:
    return tracking_page(
        request,
        "experiments.html",
        ctx,
        experiments=runs_table.experiment_summaries(db, ctx.project.id),
        limit=runs_table.EXPERIMENTS_LIMIT,
    )


# --------------------------------------------------------------------------- the runs table


@router.get("/projects/{project}/experiments/{experiment_id}")
def runs_page(
    request: Request,
    db: DbSession,
    ctx: Reader,
    experiment_id: str,
    metric: Annotated[str, Query(max_length=250)] = "",
    sort: Sort = "start",
    direction: Direction = "desc",
    filter_text: FilterField = "",
    state: Annotated[str, Query(max_length=16)] = "",
    show: Show = "all",
    parent: Annotated[str, Query(max_length=64)] = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per: Annotated[int, Query(ge=1, le=1000)] = runs_table.DEFAULT_PAGE_SIZE,
) -> Response:
    """A bad filter or state answers 400 with the reason on the page and no rows: showing every
    run instead would look like an answer to the question that was asked."""
    experiment = load_experiment(db, ctx, experiment_id)
    keys = runs_table.metric_keys(db, experiment.id)
    notice = None
    if metric and metric not in keys:
        notice = "This experiment has no metric of that name; the first metric is shown instead."
        metric = ""
    parent_run = load_run(db, ctx, parent) if parent else None
    view = RunsView(
        base=f"/projects/{ctx.project.name}/experiments/{experiment.id}",
        metric=metric or (keys[0] if keys else ""),
        sort=sort if sort != "metric" or keys else "start",
        direction=direction,
        filter=filter_text.strip(),
        state=state,
        show=show,
        parent=parent_run.id if parent_run else "",
        page=page,
        per=per if per in PAGE_SIZES else runs_table.DEFAULT_PAGE_SIZE,
    )
    error, status = None, 200
    result = RunsPage([], 0, view)
    if state and state not in STATES:
        error, status = f"unknown run state; use one of {', '.join(STATES)}", 400
    elif "\x00" in view.filter:
        error, status = "this filter cannot be used: it contains a NUL character", 400
    else:
        try:
            result = runs_table.runs_page(db, ctx.project.id, experiment, view)
        except MlflowError as exc:
            error, status = f"this filter cannot be used: {exc.message}", 400
        except DataError:  # e.g. PostgreSQL refuses a LIKE pattern that ends in its escape character
            db.rollback()
            error, status = BAD_VALUE, 400
    return tracking_page(
        request,
        "runs.html",
        ctx,
        status=status,
        experiment=experiment,
        keys=keys,
        result=result,
        view=result.view,
        parent_run=parent_run,
        states=STATES,
        page_sizes=PAGE_SIZES,
        error=error,
        notice=notice,
    )


# --------------------------------------------------------------------------- one run


@router.get("/projects/{project}/runs/{run_id}")
def run_page(
    request: Request, db: DbSession, ctx: Reader, run_id: str, tags: Annotated[str, Query(max_length=8)] = ""
) -> Response:
    run = load_run(db, ctx, run_id)
    experiment = load_experiment(db, ctx, str(run.experiment_id))
    data = runlog.run_data(db, [run.id])[run.id]
    files, more_files = run_detail.artifact_files(db, run)
    children, more_children = run_detail.child_runs(db, ctx.project.id, run)
    keys = runs_table.metric_keys(db, experiment.id)
    child_key = keys[0] if keys else ""
    models = run_detail.run_models(db, ctx.project.id, run)
    return tracking_page(
        request,
        "run.html",
        ctx,
        run=run,
        experiment=experiment,
        user=_email(db, run.user_id),
        params=data["params"],
        tags=run_detail.split_tags(data["tags"]),
        all_tags=tags == "all",
        metrics=run_detail.metric_views(db, run.id, data["metrics"]),
        max_charts=run_detail.MAX_CHARTS,
        files=files,
        more_files=more_files,
        may_download=artifact_store.may_download(ctx),
        parent=runs_table.parent_names(db, ctx.project.id, [run.id]).get(run.id),
        children=children,
        more_children=more_children,
        child_key=child_key,
        child_values=run_detail.child_metrics(db, children, child_key),
        models=models,
        versions=run_detail.run_versions(db, ctx.project.id, run, [m.model.id for m in models]),
    )


@router.get("/projects/{project}/runs/{run_id}/artifacts/{path:path}")
def download_artifact(db: DbSession, runtime: RuntimeDep, ctx: Reader, run_id: str, path: str) -> Response:
    """The tracking API's download: refused (and audited as refused) where the project keeps
    artifacts in the airlock and the caller is not a data owner; audited when it succeeds."""
    run = load_run(db, ctx, run_id)
    try:
        return artifacts_api.download_artifact(
            f"{run.experiment_id}/{run.id}/artifacts/{path}", ctx, db, runtime
        )
    except MlflowError as exc:
        raise page_error(exc) from None
