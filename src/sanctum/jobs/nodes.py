"""Compute nodes of the SecureHPC workflow: who they are, how they prove it, what they may receive.

Why a node signs each request and gets keys sealed to it: a Slurm node is a machine the server does
not control, on a network it does not own. It is registered by an administrator with two public
keys (Ed25519 to sign its requests, X25519 to receive sealed keys) and the addresses it calls from.
It receives a job's data keys only while Slurm has that job scheduled on it, and only once (a
``NodeKeyGrant`` row per job; a replayed request collides), sealed (libsodium sealed box) so that
only that node's private key opens them.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import time
from dataclasses import dataclass

from nacl.public import PublicKey, SealedBox
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sanctum import names
from sanctum.datasets import catalog, querying
from sanctum.datasets.keyring import Keyring
from sanctum.db.models import Dataset, DatasetVersion, Project
from sanctum.db.types import utcnow
from sanctum.dmp.enforce import check_node as check_node_location
from sanctum.errors import Conflict, Denied, InvalidInput, NotFound
from sanctum.jobs import table_views
from sanctum.jobs.models import Job, JobInput, Node, NodeKeyGrant, SigningKey
from sanctum.jobs.node_protocol import AUTH_SCHEME, MAX_SKEW_S, request_message
from sanctum.jobs.runner import signer_context
from sanctum.jobs.service import job_key
from sanctum.jobs.states import JobState
from sanctum.security import signing

SCHEDULED = frozenset({"RUNNING", "CONFIGURING", "COMPLETING"})


def register(
    session: Session,
    *,
    name: str,
    public_key: str,
    sealing_key: str,
    addresses: list[str],
    location: str,
    registered_by: int,
) -> Node:
    name = names.label(name, field="name", max_length=128)
    if not name or any(c.isspace() for c in name):
        raise InvalidInput("a node name is its Slurm NodeName: no spaces", code="invalid_name")
    try:
        sealing = base64.b64decode(sealing_key, validate=True)
    except ValueError:
        raise InvalidInput(
            "sealing_key must be base64 (32-byte X25519 public key)", code="invalid_key"
        ) from None
    if len(sealing) != 32:
        raise InvalidInput("sealing_key must be a 32-byte X25519 public key", code="invalid_key")
    checked = []
    for address in addresses:
        try:
            checked.append(str(ipaddress.ip_address(address.strip())))
        except ValueError:
            raise InvalidInput(f"{address[:64]!r} is not an IP address", code="invalid_address") from None
    if not checked:
        raise InvalidInput("name at least one address the node calls from", code="invalid_address")
    if session.scalar(select(Node.id).where(Node.name == name)) is not None:
        raise Conflict("a node with this name is registered", code="node_exists")
    node = Node(
        name=name,
        public_key=signing.decode_public_key(public_key),
        sealing_key=sealing,
        addresses=",".join(checked),
        location=names.label(location, field="location", max_length=64),
        registered_by_id=registered_by,
    )
    session.add(node)
    session.flush()
    return node


def authenticate(
    session: Session, header: str, *, method: str, path: str, body: bytes, ip: str | None
) -> Node:
    """The registered, active node that signed this request from one of its addresses, else Denied."""
    scheme, _, value = header.partition(" ")
    name, _, rest = value.partition(":")
    stamp_text, _, signature = rest.partition(":")
    if scheme != AUTH_SCHEME or not name or not stamp_text.isdigit() or not signature:
        raise Denied("node authentication required", code="node_auth")
    node = session.scalar(select(Node).where(Node.name == name, Node.retired_at.is_(None)))
    if node is None:
        raise Denied("this node is not registered", code="unregistered_node", persist=True)
    if ip is None or ip not in node.addresses.split(","):
        raise Denied(
            "this node is calling from an address it is not registered with",
            code="node_address",
            persist=True,
        )
    stamp = int(stamp_text)
    if abs(time.time() - stamp) > MAX_SKEW_S:
        raise Denied("the node's request is too old or its clock is wrong", code="node_clock", persist=True)
    try:
        raw = signing.decode_signature(signature)
    except InvalidInput:
        raise Denied("bad node signature", code="node_signature", persist=True) from None
    if not signing.verify(node.public_key, request_message(method, path, stamp, body), raw):
        raise Denied("bad node signature", code="node_signature", persist=True)
    return node


@dataclass(frozen=True)
class Placement:
    job: Job
    node: Node


def placed_job(session: Session, node: Node, job_id: int, slurm_state: tuple[str, str | None] | None) -> Job:
    """The Slurm job this node may act for: executor slurm, submitted, scheduled on this very node."""
    job = session.get(Job, job_id)
    if job is None or job.executor != "slurm" or job.slurm_job_id is None:
        raise NotFound("no such Slurm job")
    if job.state != JobState.RUNNING:
        raise Conflict(f"the job is {job.state}", code="job_not_running", persist=True)
    if slurm_state is None or slurm_state[1] != node.name or slurm_state[0] not in SCHEDULED:
        raise Denied("the job is not scheduled on this node", code="not_scheduled", persist=True)
    check_node_location(session, node, job)  # a disallowed location rejects the job: no plan, no keys
    return job


def plan(session: Session, job: Job) -> dict[str, object]:
    """What a node needs to verify and stage the job; holds no key and no data."""
    key = session.get(SigningKey, job.signing_key_id) if job.signing_key_id else None
    project = session.get(Project, job.project_id)
    if project is None:
        raise NotFound("the job's project is gone")
    role = signer_context(session, job, project).role.value
    inputs = []
    for pinned in session.scalars(select(JobInput).where(JobInput.job_id == job.id)).all():
        version = session.get(DatasetVersion, pinned.version_id)
        dataset = session.get(Dataset, pinned.dataset_id)
        if version is None or dataset is None:
            raise NotFound(f"input {pinned.address} no longer exists")
        item: dict[str, object] = {
            "mount": pinned.address.replace(".", "__"),
            "version_id": version.id,
            "kind": dataset.kind,
            "name": dataset.name,
            "files": [
                {"path": f.path, "blob_id": f.blob_id, "sha256": f.sha256, "size": f.size}
                for f in catalog.files(session, version)
            ],
        }
        policy = querying.table_policy(session, dataset.id) if dataset.kind == "table" else None
        if policy is not None and table_views.has_view(policy, role):
            # The node stages what the signer's role may see, as the local executor does.
            item["view"] = {"role": role, "policy": policy.model_dump(mode="json")}
        inputs.append(item)
    return {
        "job": job.id,
        "number": job.number,
        "manifest": job.manifest,
        "signature": job.signature,
        "signer_key": signing.encode_public_key(key.public_key) if key and key.revoked_at is None else None,
        "inputs": inputs,
    }


def grant_keys(session: Session, keyring: Keyring, node: Node, job: Job) -> str:
    """The job's keys sealed to the node, once. A second request for the same job is refused."""
    try:
        with session.begin_nested():  # a replay fails here without spoiling the request's transaction
            session.add(NodeKeyGrant(job_id=job.id, node_id=node.id))
    except IntegrityError:
        raise Conflict(
            "the keys for this job were already issued", code="keys_issued", persist=True
        ) from None
    project = session.get(Project, job.project_id)
    output = session.get(Dataset, job.output_dataset_id) if job.output_dataset_id else None
    if project is None or output is None:
        raise NotFound("the job's project or output dataset is gone")
    inputs = {}
    for pinned in session.scalars(select(JobInput).where(JobInput.job_id == job.id)).all():
        dataset = session.get(Dataset, pinned.dataset_id)
        if dataset is None:
            raise NotFound(f"input {pinned.address} no longer exists")
        inputs[str(pinned.version_id)] = base64.b64encode(keyring.dataset_key(session, dataset)).decode()
    payload = {
        "job_key": base64.b64encode(job_key(session, keyring, job, project)).decode(),
        "output_key": base64.b64encode(keyring.dataset_key(session, output)).decode(),
        "inputs": inputs,
    }
    job.node_id = node.id
    sealed = SealedBox(PublicKey(node.sealing_key)).encrypt(json.dumps(payload).encode())
    return base64.b64encode(sealed).decode()


def retire(session: Session, name: str) -> Node:
    node = session.scalar(select(Node).where(Node.name == name))
    if node is None:
        raise NotFound("no such node")
    node.retired_at = node.retired_at or utcnow()
    return node
