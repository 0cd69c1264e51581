"""Jobs, signing keys and lineage on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from sanctum.schemas.common import Model, PublicModel


class KeyCreate(Model):
    name: str = Field(default="key", max_length=64)
    public_key: str = Field(max_length=200, description="ed25519:<base64 of the 32-byte public key>")


class KeyPublic(PublicModel):
    name: str
    fingerprint: str
    public_key: str
    created_at: datetime
    revoked_at: datetime | None


class JobSubmit(Model):
    manifest: dict[str, Any] = Field(description="the manifest exactly as signed (RFC 8785 canonical form)")
    signature: str = Field(max_length=200, description="base64 Ed25519 signature over the canonical manifest")
    bundle: str | None = Field(default=None, description="the code bundle (.tar.gz), base64")
    bundle_from_job: int | None = Field(
        default=None, ge=1, description="re-use the stored code bundle of this project's job N instead"
    )


class OutputRef(PublicModel):
    dataset: str
    version: int


class InputPublic(PublicModel):
    dataset: str
    version: int
    manifest_sha256: str


class JobPublic(PublicModel):
    id: int = Field(description="the job's number in its project")
    project: str
    state: str
    reason: str
    executor: str
    submitted_by: str | None
    signer: str
    entrypoint: list[str]
    inputs: list[InputPublic]
    output: OutputRef | None
    output_dataset: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    runtime_seconds: float | None
    manifest_sha256: str
    code_sha256: str


class JobDetail(JobPublic):
    manifest: dict[str, Any]
    signature: str
    signature_valid: bool
    metrics: dict[str, float] | None = Field(
        default=None, description="what the job wrote to /output/metrics.json, once it succeeded"
    )


class JobLogs(PublicModel):
    stdout: str
    stderr: str
    truncated: bool = False
    live: bool = Field(default=False, description="the job is still running: the tail so far")


class Lineage(PublicModel):
    dataset: str
    version: int
    job: int
    project: str
    manifest_sha256: str
    code_sha256: str
    entrypoint: list[str]
    parameters: dict[str, Any]
    inputs: list[InputPublic]
    signer: str
    signer_key: str
    executor: str
    started_at: datetime | None
    ended_at: datetime | None
    files: list[dict[str, Any]]
