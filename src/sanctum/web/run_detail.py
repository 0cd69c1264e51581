"""Read side of the run page: tags sorted for people, metric histories as charts, artifacts,
child runs, logged models and the registry versions made from the run.

Every query starts from a run already loaded in the caller's project (``service.get_run``), and
links to other runs or models are only followed within that project.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sanctum.tracking.models import ACTIVE, Experiment, Run, RunLatestMetric, RunMetric, RunTag
from sanctum.tracking.registry_models import (
    Artifact,
    LoggedModel,
    ModelVersion,
    RegisteredModel,
    RunModelLink,
)
from sanctum.web import charts
from sanctum.web.runs_table import PARENT_TAG

SYSTEM_PREFIX = "mlflow."
NOTE_TAG = "mlflow.note.content"
# The system tags worth reading, shown as facts of the run instead of in the tags table.
FACTS = {
    "mlflow.source.name": "Source",
    "mlflow.source.type": "Source type",
    "mlflow.source.git.commit": "Git commit",
    "mlflow.source.git.branch": "Git branch",
    "mlflow.project.entryPoint": "Entry point",
}
MAX_CHARTS = 20  # charts on one page; further metrics are listed with their latest value
MAX_ARTIFACTS = 1000
MAX_CHILDREN = 200


@dataclass(frozen=True)
class Tags:
    facts: list[tuple[str, str]]  # (label, value) of FACTS present
    note: str  # the run's description (MLflow keeps it in a tag)
    user: list[RunTag]  # tags the researcher set
    system: list[RunTag]  # the other mlflow.* tags (run name, parent, logged-model history, ...)


def split_tags(tags: list[RunTag]) -> Tags:
    facts = [(FACTS[t.key], t.value) for t in tags if t.key in FACTS]
    note = next((t.value for t in tags if t.key == NOTE_TAG), "")
    user = [t for t in tags if not t.key.startswith(SYSTEM_PREFIX)]
    system = [t for t in tags if t.key.startswith(SYSTEM_PREFIX) and t.key not in FACTS and t.key != NOTE_TAG]
    return Tags(facts, note, user, system)


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class MetricView:
    latest: RunLatestMetric
    chart: charts.Chart | None
    points: int  # logged points
    not_drawn: int  # NaN or infinite values, which a line cannot show
    charted: bool  # False past MAX_CHARTS: the history was not read

    @property
    def key(self) -> str:
        return self.latest.key

    @property
    def value(self) -> str:
        return "NaN" if self.latest.is_nan else charts.number(self.latest.value)


def metric_views(db: Session, run_id: str, latest: list[RunLatestMetric]) -> list[MetricView]:
    """Each metric with its history charted (the first MAX_CHARTS, by name), in one query."""
    keys = [m.key for m in latest][:MAX_CHARTS]
    histories: dict[str, list[charts.Point]] = {k: [] for k in keys}
    counts = dict.fromkeys(keys, 0)
    if keys:
        rows = db.execute(
            select(RunMetric.key, RunMetric.step, RunMetric.value, RunMetric.is_nan)
            .where(RunMetric.run_id == run_id, RunMetric.key.in_(keys))
            .order_by(RunMetric.key, RunMetric.step, RunMetric.timestamp, RunMetric.id)
        )
        for key, step, value, is_nan in rows:
            counts[key] += 1
            if not is_nan and math.isfinite(value):
                histories[key].append((float(step), value))
    views = []
    for m in latest:
        if m.key not in histories:
            views.append(MetricView(m, None, 0, 0, charted=False))
            continue
        points = histories[m.key]
        chart = charts.line_chart(m.key, points)
        views.append(MetricView(m, chart, counts[m.key], counts[m.key] - len(points), charted=True))
    return views


# --------------------------------------------------------------------------- artifacts


@dataclass(frozen=True)
class ArtifactFile:
    path: str  # relative to the run's artifact root
    size: int


def artifact_files(db: Session, run: Run) -> tuple[list[ArtifactFile], bool]:
    """Every file under the run's artifact root (not only the top folder), and whether more than
    MAX_ARTIFACTS exist."""
    prefix = f"{run.id}/artifacts/"
    query = (
        select(Artifact.path, Artifact.size)
        .where(Artifact.experiment_id == run.experiment_id, Artifact.path.startswith(prefix, autoescape=True))
        .order_by(Artifact.path)
        .limit(MAX_ARTIFACTS + 1)
    )
    files = [ArtifactFile(path[len(prefix) :], size) for path, size in db.execute(query)]
    return files[:MAX_ARTIFACTS], len(files) > MAX_ARTIFACTS


# --------------------------------------------------------------------------- related runs and models


def child_runs(db: Session, project_id: int, run: Run) -> tuple[list[Run], bool]:
    """Active runs of this project that name ``run`` as their parent, oldest first."""
    query = (
        select(Run)
        .join(RunTag, (RunTag.run_id == Run.id) & (RunTag.key == PARENT_TAG))
        .join(Experiment, Experiment.id == Run.experiment_id)
        .where(RunTag.value == run.id, Experiment.project_id == project_id, Run.lifecycle_stage == ACTIVE)
        .order_by(Run.start_time, Run.id)
        .limit(MAX_CHILDREN + 1)
    )
    children = list(db.scalars(query))
    return children[:MAX_CHILDREN], len(children) > MAX_CHILDREN


def child_metrics(db: Session, runs: list[Run], key: str) -> dict[str, RunLatestMetric]:
    if not runs or not key:
        return {}
    query = select(RunLatestMetric).where(
        RunLatestMetric.run_id.in_([r.id for r in runs]), RunLatestMetric.key == key
    )
    return {m.run_id: m for m in db.scalars(query)}


@dataclass(frozen=True)
class ModelRow:
    model: LoggedModel
    role: str  # "output" (logged by this run) or "input" (used by it)


def run_models(db: Session, project_id: int, run: Run) -> list[ModelRow]:
    """Logged models the run produced (its own, or linked as outputs) and used (inputs)."""
    links = dict(
        db.execute(
            select(RunModelLink.model_id, RunModelLink.direction).where(RunModelLink.run_id == run.id)
        ).all()
    )
    query = (
        select(LoggedModel)
        .join(Experiment, Experiment.id == LoggedModel.experiment_id)
        .where(
            Experiment.project_id == project_id,
            LoggedModel.lifecycle_stage == ACTIVE,
            or_(LoggedModel.source_run_id == run.id, LoggedModel.id.in_(list(links))),
        )
        .order_by(LoggedModel.creation_time, LoggedModel.id)
    )
    return [
        ModelRow(m, "output" if m.source_run_id == run.id else links.get(m.id, "output"))
        for m in db.scalars(query)
    ]


def run_versions(
    db: Session, project_id: int, run: Run, model_ids: list[str]
) -> list[tuple[str, ModelVersion]]:
    """Registry versions made from this run or from one of its logged models."""
    made_from = [
        ModelVersion.run_id == run.id,
        ModelVersion.source.startswith(f"runs:/{run.id}/", autoescape=True),
    ]
    if model_ids:
        made_from.append(ModelVersion.model_id.in_(model_ids))
    query = (
        select(RegisteredModel.name, ModelVersion)
        .join(RegisteredModel, RegisteredModel.id == ModelVersion.registered_model_id)
        .where(RegisteredModel.project_id == project_id, or_(*made_from))
        .order_by(RegisteredModel.name, ModelVersion.version)
    )
    return [(name, version) for name, version in db.execute(query)]
