"""The job manifest: what a researcher signs, and the only description of a job anyone trusts.

Why the manifest carries everything (project, code hash, inputs by version, resources, executor,
expiry, a nonce): the signature covers these canonical bytes and nothing else, so a server, an
executor or a Slurm node that verifies it knows exactly what was approved. Anything not in the
manifest (a changed script, another input, a longer time limit) breaks the signature.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sanctum.errors import InvalidInput
from sanctum.security import signing

SCHEMA = "sanctum.job/v1"
MAX_VALIDITY = timedelta(days=7)
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
Scalar = str | int | float | bool


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpus: Annotated[int, Field(ge=1, le=256)] = 1
    memory_mb: Annotated[int, Field(ge=64, le=4 * 1024 * 1024)] = 2048
    gpus: Annotated[int, Field(ge=0, le=16)] = 0
    time_limit_s: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 3600
    output_mb: Annotated[int, Field(ge=1, le=1024 * 1024)] = 1024


class InputRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: Annotated[str, Field(min_length=1, max_length=200)]  # "name", or "project.name" if shared in
    version: Annotated[int, Field(ge=1)]

    @property
    def mount_name(self) -> str:
        """Where the input appears in the sandbox: /data/<name> (a shared one as <project>__<name>)."""
        return self.dataset.replace(".", "__")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["sanctum.job/v1"] = Field(SCHEMA, alias="schema")
    project: Annotated[str, Field(min_length=1, max_length=64)]
    bundle_sha256: str
    bundle_size: Annotated[int, Field(ge=1)]
    entrypoint: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=4096)]], Field(min_length=1, max_length=256)
    ]
    parameters: dict[str, Scalar] = Field(default_factory=dict)
    inputs: Annotated[list[InputRef], Field(max_length=64)] = Field(default_factory=list)
    output: Annotated[str, Field(min_length=1, max_length=64)] = "job-outputs"
    resources: Resources = Field(default_factory=Resources)
    executor: Literal["local", "slurm"] = "local"
    dmp_version: int | None = None
    expires_at: datetime
    nonce: Annotated[str, Field(min_length=16, max_length=64)]
    signer: Annotated[str, Field(min_length=8, max_length=80)]

    @field_validator("bundle_sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not HEX64.match(value):
            raise ValueError("must be 64 lower-case hex digits")
        return value

    @field_validator("parameters")
    @classmethod
    def _params(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        if len(value) > 256:
            raise ValueError("at most 256 parameters")
        for name, item in value.items():
            if not PARAM_NAME.match(name):
                raise ValueError(
                    f"parameter name {name[:64]!r} must be a letter or _ then letters, digits, _"
                )
            if isinstance(item, str) and (len(item) > 4096 or "\x00" in item):
                raise ValueError(f"parameter {name} is longer than 4096 characters or holds NUL")
        return value

    @field_validator("entrypoint")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        if any("\x00" in arg for arg in value):
            raise ValueError("arguments may not contain NUL")
        return value

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone (UTC)")
        return value.astimezone(UTC)

    def document(self) -> dict[str, Any]:
        """The JSON value that is signed (aliases, ISO times, no Python-only types)."""
        return self.model_dump(mode="json", by_alias=True)

    def canonical(self) -> bytes:
        return signing.canonical(self.document())

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()


def parse(document: Any) -> Manifest:
    """Validate a manifest a client sent; the error names the field, never echoes large input."""
    if not isinstance(document, dict):
        raise InvalidInput("the manifest must be a JSON object", code="invalid_manifest")
    try:
        return Manifest.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise InvalidInput(f"manifest {where}: {first['msg']}", code="invalid_manifest") from None


def new(
    *,
    project: str,
    bundle_sha256: str,
    bundle_size: int,
    entrypoint: list[str],
    signer: str,
    inputs: list[InputRef] | None = None,
    parameters: dict[str, Scalar] | None = None,
    output: str = "job-outputs",
    resources: Resources | None = None,
    executor: Literal["local", "slurm"] = "local",
    dmp_version: int | None = None,
    valid_for: timedelta = timedelta(hours=24),
) -> Manifest:
    """A fresh manifest with its own nonce: two submissions of the same code are two jobs."""
    return Manifest(
        project=project,
        bundle_sha256=bundle_sha256,
        bundle_size=bundle_size,
        entrypoint=entrypoint,
        parameters=parameters or {},
        inputs=inputs or [],
        output=output,
        resources=resources or Resources(),
        executor=executor,
        dmp_version=dmp_version,
        expires_at=(datetime.now(UTC) + min(valid_for, MAX_VALIDITY)).replace(microsecond=0),
        nonce=secrets.token_hex(16),
        signer=signer,
    )
