"""The jobs half of ``Client``: sign and submit code, follow jobs, read logs and lineage."""

from __future__ import annotations

import base64
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sanctum.jobs import bundle as bundles
from sanctum.jobs import manifest as manifests
from sanctum.schemas.jobs import JobDetail, JobLogs, JobPublic, KeyCreate, KeyPublic, Lineage
from sanctum.sdk import client as _wire
from sanctum.security import signing

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "rejected"})
DEFAULT_MAX_BUNDLE = 50 * 1024 * 1024


def parse_input(text: str) -> tuple[str, int | None]:
    """``dataset`` or ``dataset@3`` (or ``project.dataset@3`` for a shared one)."""
    name, at, version = text.partition("@")
    if not at:
        return name, None
    if not version.isdigit():
        raise ValueError(f"{text}: the version after @ must be a number")
    return name, int(version)


class JobsMixin:
    url: str

    if TYPE_CHECKING:

        def _call(
            self,
            method: str,
            path: str,
            expect: Any = None,
            *,
            json: Any = None,
            params: dict[str, Any] | None = None,
        ) -> Any: ...

        def list_versions(self, project: str, dataset: str, *, drafts: bool = False) -> list[Any]: ...

    # ------------------------------------------------------------------ keys
    def register_key(self, public_key: str, *, name: str = "key") -> KeyPublic:
        body = _wire._body(KeyCreate, name=name, public_key=public_key)
        return self._call("POST", "/me/keys", KeyPublic, json=body)

    def list_keys(self) -> list[KeyPublic]:
        return self._call("GET", "/me/keys", list[KeyPublic])

    def revoke_key(self, fingerprint: str) -> KeyPublic:
        return self._call("DELETE", f"/me/keys/{_wire._segment(fingerprint)}", KeyPublic)

    # ------------------------------------------------------------------ jobs
    def submit_job(
        self,
        project: str,
        code: Path,
        *,
        key: Ed25519PrivateKey,
        entrypoint: str | list[str],
        inputs: list[str] | None = None,
        parameters: dict[str, manifests.Scalar] | None = None,
        output: str = "job-outputs",
        resources: manifests.Resources | None = None,
        executor: Literal["local", "slurm"] = "local",
        max_bundle_bytes: int = DEFAULT_MAX_BUNDLE,
    ) -> JobPublic:
        """Pack ``code``, pin each input to a version (the latest when none is named), sign, submit."""
        packed = bundles.pack(code, max_bytes=max_bundle_bytes)
        argv = shlex.split(entrypoint) if isinstance(entrypoint, str) else list(entrypoint)
        pinned = []
        for text in inputs or []:
            name, version = parse_input(text)
            if version is None:
                committed = self.list_versions(project, name)
                if not committed:
                    raise ValueError(f"{name} has no committed version to run on")
                version = committed[-1].number
            pinned.append(manifests.InputRef(dataset=name, version=version))
        manifest = manifests.new(
            project=project,
            bundle_sha256=packed.sha256,
            bundle_size=len(packed.data),
            entrypoint=argv,
            signer=signing.fingerprint(signing.public_key_raw(key)),
            inputs=pinned,
            parameters=parameters,
            output=output,
            resources=resources,
            executor=executor,
        )
        return self.submit_signed(
            project, manifest.document(), sign_manifest(key, manifest.document()), packed.data
        )

    def submit_signed(
        self,
        project: str,
        document: dict[str, Any],
        signature: str,
        bundle: bytes | None,
        *,
        bundle_from_job: int | None = None,
    ) -> JobPublic:
        """Submit a manifest signed elsewhere, with its bundle or the stored bundle of an earlier job."""
        body: dict[str, Any] = {"manifest": document, "signature": signature}
        if bundle is not None:
            body["bundle"] = base64.b64encode(bundle).decode()
        else:
            body["bundle_from_job"] = bundle_from_job
        return self._call("POST", f"/projects/{_wire._segment(project)}/jobs", JobPublic, json=body)

    def list_jobs(self, project: str, *, state: str | None = None) -> list[JobPublic]:
        return self._call(
            "GET", f"/projects/{_wire._segment(project)}/jobs", list[JobPublic], params={"state": state}
        )

    def get_job(self, project: str, number: int) -> JobDetail:
        return self._call("GET", f"/projects/{_wire._segment(project)}/jobs/{number}", JobDetail)

    def job_logs(self, project: str, number: int) -> JobLogs:
        return self._call("GET", f"/projects/{_wire._segment(project)}/jobs/{number}/logs", JobLogs)

    def cancel_job(self, project: str, number: int) -> JobPublic:
        return self._call("POST", f"/projects/{_wire._segment(project)}/jobs/{number}/cancel", JobPublic)

    def wait_job(self, project: str, number: int, *, timeout: float = 3600, poll: float = 0.5) -> JobDetail:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get_job(project, number)
            if job.state in FINAL_STATES or time.monotonic() > deadline:
                return job
            time.sleep(poll)

    def lineage(self, project: str, dataset: str, version: int) -> Lineage:
        path = f"/projects/{_wire._segment(project)}/lineage/{_wire._segment(dataset)}/{version}"
        return self._call("GET", path, Lineage)

    def ro_crate(self, project: str, dataset: str, version: int) -> dict[str, Any]:
        path = f"/projects/{_wire._segment(project)}/lineage/{_wire._segment(dataset)}/{version}/ro-crate"
        return self._call("GET", path, dict[str, Any])


def sign_manifest(key: Ed25519PrivateKey, document: dict[str, Any]) -> str:
    return signing.sign(key, signing.canonical(document))


def public_key_text(key: Ed25519PrivateKey) -> str:
    return signing.encode_public_key(signing.public_key_raw(key))


def encode_bundle(data: bytes) -> str:
    return base64.b64encode(data).decode()
