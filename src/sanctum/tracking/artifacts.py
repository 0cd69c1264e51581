"""Run and logged-model artifacts: a catalog of (experiment, path) → encrypted blob.

Artifacts are data (models trained on patient records, plots, prediction files), so they get what
dataset files get: encryption at rest under a data key of their own (one per experiment, wrapped
by the project key, so deleting the project shreds them), tenant-scoped lookup (another project's
experiment id is "does not exist"), an audit event for every write and every download, and an
optional airlock rule that keeps them from leaving the project except through its owners.

Paths are the client's ``mlflow-artifacts:/<experiment>/<rest>``. Writes go only under a run
(``<run>/artifacts/...``) or a logged model (``models/<model>/artifacts/...``) of that
experiment, so nobody parks bytes outside what the catalog can attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.access.permissions import Role
from sanctum.datasets.keyring import Keyring
from sanctum.db.models import Project
from sanctum.projects.service import ProjectContext
from sanctum.store import BlobInfo, keys
from sanctum.tracking import service as svc
from sanctum.tracking.models import ACTIVE, Run
from sanctum.tracking.registry_models import Artifact, ExperimentKey, LoggedModel

MAX_PATH = 1024
ALLOWED, AIRLOCK = "allowed", "airlock"
DOWNLOAD_MODES = (ALLOWED, AIRLOCK)
AIRLOCK_MESSAGE = (
    "artifacts of this project leave it only through an export request in the airlock "
    "(the project's data owners set artifact_download to 'airlock'); view them on the platform instead"
)


def clean_path(raw: Any) -> str:
    """A relative POSIX path with no way out of where it is put: refused, never normalised, so
    what is stored is exactly what the client named."""
    if not isinstance(raw, str) or not raw.strip("/"):
        raise svc.invalid("an artifact path is required")
    path = raw.rstrip("/")
    if len(path) > MAX_PATH:
        raise svc.invalid(f"artifact path is longer than {MAX_PATH} characters")
    if "\x00" in path or "\\" in path or path.startswith("/") or ":" in path.split("/", 1)[0]:
        raise svc.invalid(f"invalid artifact path {raw!r}")
    if any(part in ("", ".", "..") or part != part.strip() for part in path.split("/")):
        raise svc.invalid(f"invalid artifact path {raw!r}: no '.', '..' or empty segments")
    if any(ord(c) < 32 for c in path):
        raise svc.invalid(f"invalid artifact path {raw!r}: control characters")
    return path


@dataclass(frozen=True)
class Location:
    experiment_id: int
    path: str  # relative to the experiment; "" is the experiment itself

    @property
    def target(self) -> str:
        return f"experiment:{self.experiment_id}"


def locate(db: Session, ctx: ProjectContext, raw: Any) -> Location:
    """The experiment (of the caller's project, else 404) and the path within it."""
    path = clean_path(raw)
    head, _, rest = path.partition("/")
    return Location(svc.get_experiment(db, ctx, head).id, rest)


def check_writable(db: Session, where: Location) -> None:
    """Writes land under an active run or a logged model of the same experiment."""
    parts = where.path.split("/")
    if len(parts) >= 3 and parts[1] == "artifacts":
        run = db.scalar(select(Run).where(Run.id == parts[0], Run.experiment_id == where.experiment_id))
        if run is None:
            raise svc.missing(f"run {parts[0]!r} not found")
        if run.lifecycle_stage != ACTIVE:
            raise svc.invalid(f"the run {run.id} must be in the 'active' state; it is {run.lifecycle_stage}")
        return
    if len(parts) >= 4 and parts[0] == "models" and parts[2] == "artifacts":
        model = db.scalar(
            select(LoggedModel.id).where(
                LoggedModel.id == parts[1], LoggedModel.experiment_id == where.experiment_id
            )
        )
        if model is None:
            raise svc.missing(f"logged model {parts[1]!r} not found")
        return
    raise svc.invalid(
        "artifacts are written under <experiment>/<run_id>/artifacts/ or "
        "<experiment>/models/<model_id>/artifacts/"
    )


# --------------------------------------------------------------------------- keys


def _context(experiment_id: int) -> str:
    return f"experiment:{experiment_id}"


def existing_key(db: Session, keyring: Keyring, project: Project, experiment_id: int) -> bytes | None:
    wrapped = db.scalar(select(ExperimentKey.wrapped_key).where(ExperimentKey.experiment_id == experiment_id))
    if wrapped is None:
        return None
    if project.wrapped_key is None:
        raise svc.missing("this project's data was shredded")
    return keys.unwrap(keyring.project_key(db, project), wrapped, _context(experiment_id))


def create_key(db: Session, keyring: Keyring, project_id: int, experiment_id: int) -> bytes:
    """Called in a short write session of its own: the first upload to an experiment.

    The project row is locked first (PostgreSQL; SQLite's write session is already exclusive), so
    two first uploads cannot each create a project or experiment key and leave one unreadable.
    """
    project = db.get(Project, project_id, with_for_update=True, populate_existing=True)
    assert project is not None
    found = existing_key(db, keyring, project, experiment_id)
    if found is not None:
        return found
    key = keys.new_data_key()
    wrapped = keys.wrap(keyring.project_key(db, project), key, _context(experiment_id))
    db.add(ExperimentKey(experiment_id=experiment_id, wrapped_key=wrapped))
    db.flush()
    return key


# --------------------------------------------------------------------------- catalog


def attach(db: Session, ctx: ProjectContext, where: Location, info: BlobInfo) -> str | None:
    """Record an uploaded blob at its path, with its audit event; returns the blob it replaced
    (MLflow overwrites an artifact logged twice), for the caller to delete after the commit."""
    check_writable(db, where)
    entry = db.scalar(
        select(Artifact).where(Artifact.experiment_id == where.experiment_id, Artifact.path == where.path)
    )
    replaced = None
    if entry is None:
        entry = Artifact(experiment_id=where.experiment_id, path=where.path)
        db.add(entry)
    else:
        replaced = entry.blob_id
    entry.blob_id, entry.size, entry.sha256 = info.blob_id, info.size, info.sha256
    entry.created_by_id = ctx.principal.user_id
    ctx.record(
        db,
        "artifact.upload",
        target=where.target,
        details={"path": where.path, "size": info.size, "sha256": info.sha256, "replaced": bool(replaced)},
    )
    db.flush()
    return replaced


def find(db: Session, where: Location) -> Artifact:
    entry = db.scalar(
        select(Artifact).where(Artifact.experiment_id == where.experiment_id, Artifact.path == where.path)
    )
    if entry is None:
        raise svc.missing(f"no artifact at {where.path!r}")
    return entry


def listing(db: Session, where: Location) -> list[dict[str, Any]]:
    """The entries directly under a directory, names relative to it (MLflow's FileInfo).

    The prefix is matched in SQL; only the rows under it are grouped into files and folders. A
    path that is itself a file lists as empty, as MLflow's servers answer.
    """
    prefix = f"{where.path}/" if where.path else ""
    query = select(Artifact.path, Artifact.size).where(Artifact.experiment_id == where.experiment_id)
    if prefix:
        query = query.where(Artifact.path.startswith(prefix, autoescape=True))
    files: dict[str, int] = {}
    dirs: set[str] = set()
    for path, size in db.execute(query):
        name, sep, _ = path[len(prefix) :].partition("/")
        if sep:
            dirs.add(name)
        else:
            files[name] = size
    entries = [{"path": d, "is_dir": True} for d in dirs - files.keys()]
    entries += [{"path": name, "is_dir": False, "file_size": size} for name, size in files.items()]
    return sorted(entries, key=lambda e: e["path"])


def may_download(ctx: ProjectContext) -> bool:
    """The airlock rule: when the project says so, only its data owners take artifacts out."""
    return ctx.project.artifact_download != AIRLOCK or ctx.role is Role.DATA_OWNER


def blob_ids(db: Session) -> set[str]:
    """Every blob an artifact references: what orphan cleanup must keep."""
    return set(db.scalars(select(Artifact.blob_id)))
