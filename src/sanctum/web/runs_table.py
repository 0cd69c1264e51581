"""Read side of the experiments pages: experiment summaries and the runs table of one experiment.

The runs table is filtered, sorted and paged in SQL. The MLflow filter and most orderings go
through the tracking API's own search code (``tracking.search``), so a filter means on a page
exactly what it means to ``mlflow.search_runs``; the page adds only what MLflow's syntax cannot
say (a run state picked from a list, "children of this run", "top-level runs only") as further
conditions on the same query, and two orderings MLflow has no name for (by e-mail, by duration).

Everything is read through an experiment already loaded in the caller's project, and parent and
child links are only followed inside that project: a run of another project that names one of
ours as its parent (tags are free text) is never counted or shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Select, exists, func, select
from sqlalchemy.orm import Session, aliased

from sanctum.db.models import User
from sanctum.tracking import search as run_search
from sanctum.tracking import service as svc
from sanctum.tracking.models import ACTIVE, Experiment, Run, RunLatestMetric, RunTag

PARENT_TAG = "mlflow.parentRunId"
STATES = tuple(sorted(svc.RUN_STATUSES))
PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 50
MAX_METRIC_KEYS = 500
EXPERIMENTS_LIMIT = 500

Sort = Literal["name", "metric", "user", "start", "end", "duration", "state"]
Direction = Literal["asc", "desc"]
Show = Literal["all", "top"]
SEARCH_ATTRIBUTE = {"name": "run_name", "start": "start_time", "end": "end_time", "state": "status"}


# --------------------------------------------------------------------------- experiments


@dataclass(frozen=True)
class ExperimentSummary:
    experiment: Experiment
    runs: int
    last_activity: int  # epoch ms: the newest of creation, rename, run start/end, metric


def experiment_summaries(db: Session, project_id: int) -> list[ExperimentSummary]:
    """The project's active experiments by name, with run counts and last activity, in three
    grouped queries whatever the number of experiments."""
    experiments = list(
        db.scalars(
            select(Experiment)
            .where(Experiment.project_id == project_id, Experiment.lifecycle_stage == ACTIVE)
            .order_by(Experiment.name)
            .limit(EXPERIMENTS_LIMIT)
        )
    )
    ids = [e.id for e in experiments]
    if not ids:
        return []
    runs: dict[int, tuple[int, int, int]] = {
        row[0]: (row[1], row[2] or 0, row[3] or 0)
        for row in db.execute(
            select(Run.experiment_id, func.count(), func.max(Run.start_time), func.max(Run.end_time))
            .where(Run.experiment_id.in_(ids), Run.lifecycle_stage == ACTIVE)
            .group_by(Run.experiment_id)
        )
    }
    metrics: dict[int, int] = {
        row[0]: row[1] or 0
        for row in db.execute(
            select(Run.experiment_id, func.max(RunLatestMetric.timestamp))
            .join(Run, Run.id == RunLatestMetric.run_id)
            .where(Run.experiment_id.in_(ids), Run.lifecycle_stage == ACTIVE)
            .group_by(Run.experiment_id)
        )
    }
    result = []
    for e in experiments:
        count, started, ended = runs.get(e.id, (0, 0, 0))
        last = max(e.last_update_time, started, ended, metrics.get(e.id, 0))
        result.append(ExperimentSummary(e, count, last))
    return result


def metric_keys(db: Session, experiment_id: int) -> list[str]:
    """The experiment's metric names, the first seen first (by the start of the first run that
    logged them, then by name): the first is the runs table's default metric column."""
    first = func.min(Run.start_time).label("first")
    query = (
        select(RunLatestMetric.key, first)
        .join(Run, Run.id == RunLatestMetric.run_id)
        .where(Run.experiment_id == experiment_id, Run.lifecycle_stage == ACTIVE)
        .group_by(RunLatestMetric.key)
        .order_by(first, RunLatestMetric.key)
        .limit(MAX_METRIC_KEYS)
    )
    return [key for key, _ in db.execute(query)]


# --------------------------------------------------------------------------- the runs table


@dataclass(frozen=True)
class RunsView:
    """What the runs table shows: the query string of the page, checked."""

    base: str  # the page's path
    metric: str = ""
    sort: Sort = "start"
    direction: Direction = "desc"
    filter: str = ""
    state: str = ""
    show: Show = "all"
    parent: str = ""
    page: int = 1
    per: int = DEFAULT_PAGE_SIZE

    def url(self, **changes: Any) -> str:
        """This view with some fields changed (a new sort or filter starts again at page 1)."""
        if "page" not in changes:
            changes["page"] = 1
        view = replace(self, **changes)
        defaults = RunsView(self.base)
        query = {
            name: getattr(view, name)
            for name in ("metric", "sort", "direction", "filter", "state", "show", "parent", "page", "per")
            if getattr(view, name) != getattr(defaults, name)
        }
        return view.base + ("?" + urlencode(query) if query else "")

    def sort_url(self, column: Sort) -> str:
        """Clicking a header sorts by it; clicking the sorted header again reverses it. Names
        start A→Z, everything else largest or newest first."""
        if column == self.sort:
            return self.url(direction="asc" if self.direction == "desc" else "desc")
        return self.url(sort=column, direction="asc" if column in ("name", "user") else "desc")

    def aria_sort(self, column: Sort) -> str:
        if column != self.sort:
            return "none"
        return "ascending" if self.direction == "asc" else "descending"


@dataclass(frozen=True)
class RunRow:
    run: Run
    user: str
    metric: RunLatestMetric | None
    children: int
    parent: tuple[str, str] | None  # (id, name) of its parent run, when that is in this project

    @property
    def duration_seconds(self) -> float | None:
        if self.run.end_time is None:
            return None
        return max(0, self.run.end_time - self.run.start_time) / 1000


@dataclass
class RunsPage:
    rows: list[RunRow]
    total: int
    view: RunsView
    first: int = 0  # 1-based number of the first row shown
    pages: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


def _has_parent(parent: str | None = None) -> ColumnElement[bool]:
    tag = aliased(RunTag)
    conditions = [tag.run_id == Run.id, tag.key == PARENT_TAG]
    if parent is not None:
        conditions.append(tag.value == parent)
    return exists().where(*conditions)


def _filtered(experiment: Experiment, view: RunsView) -> Select[tuple[Run]]:
    """Raises ``MlflowError`` for a filter MLflow would refuse."""
    query = select(Run).where(Run.experiment_id == experiment.id, Run.lifecycle_stage == ACTIVE)
    condition = run_search.where(view.filter or None)
    if condition is not None:
        query = query.where(condition)
    if view.state:
        query = query.where(Run.status == view.state)
    if view.parent:
        query = query.where(_has_parent(view.parent))
    elif view.show == "top":
        query = query.where(~_has_parent())
    return query


def _metric_ident(key: str) -> str | None:
    """``metrics.<key>`` quoted so the search parser reads it back whole (None if it cannot be)."""
    if "`" not in key:
        return f"metrics.`{key}`"
    if '"' not in key:
        return f'metrics."{key}"'
    return None


def _ordered(query: Select[tuple[Run]], view: RunsView) -> tuple[Select[tuple[Run]], list[Any]]:
    descending = view.direction == "desc"
    if view.sort in ("user", "duration"):
        if view.sort == "user":
            query = query.outerjoin(User, User.id == Run.user_id)
            column: Any = User.email
        else:
            column = Run.end_time - Run.start_time  # NULL while a run has no end: last either way
        key = column.desc() if descending else column.asc()
        return query, [column.is_(None), key, Run.start_time.desc(), Run.id.asc()]
    ident = (
        _metric_ident(view.metric) if view.sort == "metric" else f"attributes.{SEARCH_ATTRIBUTE[view.sort]}"
    )
    if ident is None:
        ident = "attributes.start_time"
    return run_search.order_by([f"{ident} {'DESC' if descending else 'ASC'}"], query)


def runs_page(db: Session, project_id: int, experiment: Experiment, view: RunsView) -> RunsPage:
    """One page of the table. Raises ``MlflowError`` (INVALID_PARAMETER_VALUE) for a bad filter."""
    filtered = _filtered(experiment, view)
    total = db.scalar(select(func.count()).select_from(filtered.order_by(None).subquery())) or 0
    pages = max(1, -(-total // view.per))
    page = min(view.page, pages)
    query, ordering = _ordered(filtered, view)
    offset = (page - 1) * view.per
    runs = list(db.scalars(query.order_by(*ordering).offset(offset).limit(view.per)))
    view = replace(view, page=page)
    return RunsPage(_rows(db, project_id, experiment, runs, view.metric), total, view, offset + 1, pages)


def _rows(db: Session, project_id: int, experiment: Experiment, runs: list[Run], metric: str) -> list[RunRow]:
    """Users, the chosen metric, children counts and parents of one page: four queries in all."""
    ids = [r.id for r in runs]
    if not ids:
        return []
    users = {r.user_id for r in runs if r.user_id is not None}
    emails = dict(db.execute(select(User.id, User.email).where(User.id.in_(users))).all()) if users else {}
    values = {
        m.run_id: m
        for m in db.scalars(
            select(RunLatestMetric).where(RunLatestMetric.run_id.in_(ids), RunLatestMetric.key == metric)
        )
    }
    child = aliased(Run)
    children = dict(
        db.execute(
            select(RunTag.value, func.count())
            .join(child, child.id == RunTag.run_id)
            .where(
                RunTag.key == PARENT_TAG,
                RunTag.value.in_(ids),
                child.experiment_id == experiment.id,
                child.lifecycle_stage == ACTIVE,
            )
            .group_by(RunTag.value)
        ).all()
    )
    parents = parent_names(db, project_id, ids)
    return [
        RunRow(
            run=r,
            user=emails.get(r.user_id or -1, "(deleted user)"),
            metric=values.get(r.id),
            children=children.get(r.id, 0),
            parent=parents.get(r.id),
        )
        for r in runs
    ]


def parent_names(db: Session, project_id: int, run_ids: list[str]) -> dict[str, tuple[str, str]]:
    """run id → (parent id, parent name), for parents that are runs of the same project."""
    parent = aliased(Run)
    query = (
        select(RunTag.run_id, parent.id, parent.name)
        .join(parent, parent.id == RunTag.value)
        .join(Experiment, Experiment.id == parent.experiment_id)
        .where(RunTag.key == PARENT_TAG, RunTag.run_id.in_(run_ids), Experiment.project_id == project_id)
    )
    return {run_id: (pid, name) for run_id, pid, name in db.execute(query)}
