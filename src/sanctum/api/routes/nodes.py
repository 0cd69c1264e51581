"""Compute nodes: registered by admins; a node's own calls are signed with its key, not a token."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import Field
from sqlalchemy.orm import Session

from sanctum.api.deps import DbSession, NodesAdmin, RuntimeDep, client_ip
from sanctum.api.runtime import Runtime
from sanctum.audit import AuditContext, record
from sanctum.datasets.paths import file_path
from sanctum.db.models import Project
from sanctum.errors import Denied, InvalidInput, SanctumError, Unauthenticated
from sanctum.jobs import nodes, outputs, slurm
from sanctum.jobs.models import Job, Node
from sanctum.jobs.runner import Outcome, finish_job
from sanctum.jobs.states import FINAL, JobState
from sanctum.schemas.common import Model, PublicModel
from sanctum.security import signing
from sanctum.store import BlobInfo

router = APIRouter(tags=["nodes"])


class NodeCreate(Model):
    name: str = Field(max_length=128)
    public_key: str = Field(max_length=200, description="ed25519:<base64>: the node signs its requests")
    sealing_key: str = Field(max_length=100, description="base64 X25519 public key: keys are sealed to it")
    addresses: list[str] = Field(max_length=16)
    location: str = Field(default="", max_length=64)


class NodePublic(PublicModel):
    name: str
    public_key: str
    addresses: list[str]
    location: str
    retired: bool


class NodeFile(Model):
    path: str = Field(max_length=1024)
    blob_id: str = Field(max_length=64)
    size: int = Field(ge=0)
    sha256: str = Field(max_length=64)


class NodeResult(Model):
    state: str = Field(max_length=16)
    reason: str = Field(default="", max_length=2000)
    exit_code: int | None = None
    outputs: list[NodeFile] = Field(default_factory=list, max_length=100_000)
    skipped: int = Field(default=0, ge=0)
    stdout_blob_id: str | None = Field(default=None, max_length=64)
    stderr_blob_id: str | None = Field(default=None, max_length=64)
    metrics: dict[str, Any] | None = None
    metrics_problem: str | None = Field(default=None, max_length=500)


def node_public(node: Node) -> NodePublic:
    return NodePublic(
        name=node.name,
        public_key=signing.encode_public_key(node.public_key),
        addresses=node.addresses.split(","),
        location=node.location,
        retired=node.retired_at is not None,
    )


@router.post("/api/v1/admin/nodes", status_code=201)
def register_node(body: NodeCreate, db: DbSession, principal: NodesAdmin) -> NodePublic:
    node = nodes.register(
        db,
        name=body.name,
        public_key=body.public_key,
        sealing_key=body.sealing_key,
        addresses=body.addresses,
        location=body.location,
        registered_by=principal.user_id,
    )
    record(
        db,
        AuditContext(principal.user_id, principal.email, principal.ip),
        "node.register",
        target=node.name,
        details={"addresses": node.addresses, "location": node.location},
    )
    return node_public(node)


@router.get("/api/v1/admin/nodes")
def list_nodes(db: DbSession, principal: NodesAdmin) -> list[NodePublic]:
    from sqlalchemy import select

    return [node_public(n) for n in db.scalars(select(Node).order_by(Node.name)).all()]


@router.delete("/api/v1/admin/nodes/{name}")
def retire_node(name: str, db: DbSession, principal: NodesAdmin) -> NodePublic:
    node = nodes.retire(db, name)
    record(db, AuditContext(principal.user_id, principal.email, principal.ip), "node.retire", target=name)
    return node_public(node)


# ------------------------------------------------------------------------------------------ nodes


class NodeCaller:
    """The dependency of the node routes: a registered node's signed request, not a user's token."""

    node_authenticated = True  # what the route walker in the tests looks for

    async def __call__(
        self, request: Request, db: DbSession, authorization: Annotated[str | None, Header()] = None
    ) -> Node:
        if not authorization:
            raise Unauthenticated("node authentication required (a signed SanctumNode request)")
        body = await request.body()
        try:
            return nodes.authenticate(
                db,
                authorization,
                method=request.method,
                path=request.url.path,
                body=body,
                ip=client_ip(request),
            )
        except Denied as exc:
            record(
                db,
                AuditContext(ip=client_ip(request)),
                "node.auth",
                outcome="denied",
                target=authorization.partition(" ")[2].partition(":")[0][:128] or None,
                details={"reason": exc.message, "path": request.url.path[:200]},
            )
            exc.persist = True
            raise


CallingNode = Annotated[Node, Depends(NodeCaller())]


def _where(runtime: Runtime, job_id: int, db: Session) -> tuple[str, str | None] | None:
    settings = runtime.settings
    job = db.get(Job, job_id)
    if not settings.slurm_partition or job is None or not job.slurm_job_id:
        return None
    seen = slurm.job(
        slurm.SlurmSettings(partition=settings.slurm_partition, conf=settings.slurm_conf), job.slurm_job_id
    )
    return seen.state, seen.node


def _audit(db: Session, node: Node, job: Job, action: str, outcome: str = "ok", **details: object) -> None:
    project = db.get(Project, job.project_id)
    record(
        db,
        AuditContext(actor_email=f"node:{node.name}"),
        action,
        outcome=outcome,
        project_id=job.project_id,
        project_name=project.name if project else None,
        target=f"job:{job.number}",
        details={"node": node.name, **details},
    )


@router.post("/api/v1/node/jobs/{job_id}/plan")
async def node_plan(
    job_id: int, request: Request, db: DbSession, runtime: RuntimeDep, node: CallingNode
) -> dict[str, object]:
    job = nodes.placed_job(db, node, job_id, _where(runtime, job_id, db))
    return nodes.plan(db, job)


@router.post("/api/v1/node/jobs/{job_id}/keys")
async def node_keys(
    job_id: int, request: Request, db: DbSession, runtime: RuntimeDep, node: CallingNode
) -> dict[str, str]:
    try:
        job = nodes.placed_job(db, node, job_id, _where(runtime, job_id, db))
        sealed = nodes.grant_keys(db, runtime.keyring, node, job)
    except SanctumError as exc:
        exc.persist = True
        found = db.get(Job, job_id)
        if found is not None:
            _audit(
                db, node, found, "job.keys", outcome="denied", reason=str(getattr(exc, "message", exc))[:200]
            )
        raise
    _audit(db, node, job, "job.keys")
    return {"sealed": sealed}


@router.post("/api/v1/node/jobs/{job_id}/result")
async def node_result(
    job_id: int, request: Request, db: DbSession, runtime: RuntimeDep, node: CallingNode
) -> dict[str, str]:
    job = db.get(Job, job_id)
    if job is None or job.node_id != node.id:
        raise Denied("this node did not receive this job's keys", code="not_granted")
    if job.state in FINAL:
        return {"state": job.state}
    body = NodeResult.model_validate(json.loads(await request.body()))
    if body.state not in {s.value for s in FINAL}:
        raise InvalidInput("state must be a final job state", code="invalid_state")
    collected = None
    if body.state == JobState.SUCCEEDED:
        collected = outputs.Collected(skipped=["?"] * body.skipped, metrics_problem=body.metrics_problem)
        if body.metrics is not None:
            try:
                collected.metrics = outputs.check_metrics(body.metrics)
            except ValueError as exc:
                collected.metrics_problem = f"{outputs.METRICS_FILE}: {exc}"
        for f in body.outputs:
            size = runtime.store.size(f.blob_id)
            collected.files.append((file_path(f.path), BlobInfo(f.blob_id, f.size, f.sha256, size)))
    logs = (body.stdout_blob_id, body.stderr_blob_id)
    db.commit()  # finish_job writes in its own session
    finish_job(
        runtime, job_id, Outcome(body.state, body.reason, body.exit_code), log_blobs=logs, collected=collected
    )
    return {"state": body.state}
