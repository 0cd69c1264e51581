"""The node's half of the Slurm executor: ``sanctum node verify-prolog`` and ``sanctum node run``.

Why the node verifies on its own: the server, the shared file system and the network between them
are all things a node should not take on trust. The Prolog recomputes the code bundle's hash from
the shared spool and checks the researcher's signature over the manifest before Slurm starts
anything; ``node run`` does it again, then asks for the data keys (signed request, sealed answer,
once), stages, runs the same bubblewrap sandbox as the local executor, writes outputs encrypted to
the shared store and reports. Staged plaintext is wiped whatever happens.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from nacl.public import PrivateKey, SealedBox

from sanctum.jobs import bundle as bundles
from sanctum.jobs import manifest as manifests
from sanctum.jobs import node_staging, outputs, sandbox, slurm, staging_files
from sanctum.jobs.environment import job_environment
from sanctum.jobs.node_protocol import auth_header
from sanctum.jobs.slurm_script import job_id_from_script, spool_dir
from sanctum.security import signing
from sanctum.store import LocalBlobStore

CONFIG_ENV = "SANCTUM_NODE_DIR"
DEFAULT_DIR = Path("/etc/sanctum-node")


class NodeError(Exception):
    pass


@dataclass(frozen=True)
class NodeConfig:
    directory: Path
    name: str
    server_url: str
    blob_root: Path
    spool_dir: Path
    staging_dir: Path
    sandbox_uid: int = 65534

    @classmethod
    def load(cls, directory: Path | None = None) -> NodeConfig:
        folder = directory or Path(os.environ.get(CONFIG_ENV, DEFAULT_DIR))
        try:
            raw = json.loads((folder / "node.json").read_text())
        except (OSError, ValueError) as exc:
            raise NodeError(f"no node configuration in {folder} ({exc}); run `sanctum node keygen`") from None
        url = os.environ.get("SANCTUM_URL") or raw["server_url"]
        return cls(
            folder,
            raw["name"],
            url.rstrip("/"),
            Path(raw["blob_root"]),
            Path(raw["spool_dir"]),
            Path(raw["staging_dir"]),
            int(raw.get("sandbox_uid", 65534)),
        )

    def signing_key(self) -> Any:
        return signing.load_private_key((self.directory / "node-signing.pem").read_bytes())

    def sealing_key(self) -> PrivateKey:
        return PrivateKey(base64.b64decode((self.directory / "node-sealing.key").read_text()))


def keygen(
    directory: Path, *, name: str, server_url: str, blob_root: Path, spool: Path, staging: Path
) -> dict[str, str]:
    """Create the node's two key pairs (private halves 0600) and its configuration."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    sign_key = signing.new_private_key()
    seal_key = PrivateKey.generate()
    for filename, data in (
        ("node-signing.pem", signing.private_key_pem(sign_key)),
        ("node-sealing.key", base64.b64encode(bytes(seal_key)) + b"\n"),
    ):
        fd = os.open(directory / filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    config = {
        "name": name,
        "server_url": server_url,
        "blob_root": str(blob_root),
        "spool_dir": str(spool),
        "staging_dir": str(staging),
    }
    (directory / "node.json").write_text(json.dumps(config, indent=2))
    return {
        "name": name,
        "public_key": signing.encode_public_key(signing.public_key_raw(sign_key)),
        "sealing_key": base64.b64encode(bytes(seal_key.public_key)).decode(),
    }


class NodeClient:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.key = config.signing_key()
        self.http = httpx.Client(base_url=config.server_url, timeout=60)

    def post(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps(payload or {}).encode()
        header = auth_header(self.config.name, self.key, "POST", path, body)
        response = self.http.post(
            path, content=body, headers={"Authorization": header, "Content-Type": "application/json"}
        )
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise NodeError(f"server refused {path}: {response.status_code} {message}")
        return response.json()


def verify(client: NodeClient, job_id: int) -> tuple[dict[str, Any], manifests.Manifest, bytes]:
    """The checks the Prolog and the runner make on the node itself; raises NodeError."""
    plan = client.post(f"/api/v1/node/jobs/{job_id}/plan")
    if not plan.get("signer_key"):
        raise NodeError("the signer's key is unknown or revoked")
    canonical = plan["manifest"].encode()
    if signing.canonical(json.loads(canonical)) != canonical:
        raise NodeError("the manifest is not in canonical form")
    public = signing.decode_public_key(plan["signer_key"])
    if not signing.verify(public, canonical, signing.decode_signature(plan["signature"])):
        raise NodeError("the manifest's signature does not verify")
    manifest = manifests.parse(json.loads(canonical))
    if manifest.expires_at <= datetime.now(UTC):
        raise NodeError("the manifest has expired")
    try:
        bundle = (spool_dir(client.config.spool_dir, job_id) / "bundle.tar.gz").read_bytes()
    except OSError as exc:
        raise NodeError(f"the code bundle is missing from the spool: {exc}") from None
    if len(bundle) != manifest.bundle_size or hashlib.sha256(bundle).hexdigest() != manifest.bundle_sha256:
        raise NodeError("the code in the spool differs from the code that was signed")
    return plan, manifest, bundle


def verify_prolog(config: NodeConfig | None = None) -> int:
    """Exit status for the Prolog: 0 only when this node verified the job's manifest and code."""
    config = config or NodeConfig.load()
    slurm_id = os.environ.get("SLURM_JOB_ID", "")
    settings = slurm.SlurmSettings(partition="sanctum", conf=None)
    job_id = job_id_from_script(slurm.batch_script(settings, slurm_id))
    if job_id is None:
        raise NodeError(f"Slurm job {slurm_id} is not a Sanctum job")
    verify(NodeClient(config), job_id)
    return job_id


def run(job_id: int, config: NodeConfig | None = None) -> str:
    """Run one job on this node; returns the state it ended in (also reported to the server)."""
    config = config or NodeConfig.load()
    client = NodeClient(config)
    if threading.current_thread() is threading.main_thread():
        node_staging.stop_on_sigterm()
    node_staging.wipe_stale(config.staging_dir)  # what a dead node or killed run left behind
    with node_staging.held(node_staging.job_root(config.staging_dir, job_id)) as root:
        try:
            plan, manifest, bundle = verify(client, job_id)
            sealed = base64.b64decode(client.post(f"/api/v1/node/jobs/{job_id}/keys")["sealed"])
            keys = json.loads(SealedBox(config.sealing_key()).decrypt(sealed))
        except NodeError as exc:
            client.post(f"/api/v1/node/jobs/{job_id}/result", {"state": "rejected", "reason": str(exc)})
            return "rejected"
        try:
            result = _execute(config, plan, manifest, bundle, keys, root)
        except node_staging.Terminated:
            # Best effort: the server's Slurm watcher ends the job anyway if this report is lost.
            with contextlib.suppress(NodeError, httpx.HTTPError):
                client.post(
                    f"/api/v1/node/jobs/{job_id}/result",
                    {"state": "failed", "reason": "stopped by Slurm (SIGTERM); staged data wiped"},
                )
            raise
        client.post(f"/api/v1/node/jobs/{job_id}/result", result)
        return str(result["state"])


def _execute(
    config: NodeConfig,
    plan: dict[str, Any],
    manifest: manifests.Manifest,
    bundle: bytes,
    keys: dict[str, Any],
    root: Path,
) -> dict[str, Any]:
    store = LocalBlobStore(config.blob_root)
    root.mkdir(mode=0o700, parents=True)
    code, data, output, logs = staging_files.job_folders(root)
    bundles.unpack(bundle, code, max_bytes=max(manifest.bundle_size, 1024))
    inputs: dict[str, Path] = {}
    for item in plan["inputs"]:
        key = base64.b64decode(keys["inputs"][str(item["version_id"])])
        target = data / item["mount"]
        target.mkdir(mode=0o700)
        for entry in item["files"]:
            name = f"{item['name']}.parquet" if item["kind"] == "table" else entry["path"]
            exact = item["kind"] != "table"
            if item.get("view"):  # the signer's role sees a view of this table, not the stored table
                from sanctum.jobs.table_views import write_view

                view = item["view"]
                write_view(store, entry["blob_id"], key, target / name, view["policy"], view["role"])
                continue
            if not staging_files.decrypt_file(
                store, entry["blob_id"], key, target / name, entry["size"], exact=exact
            ):
                return {"state": "failed", "reason": f"input file {entry['path']} is truncated on the node"}
        inputs[item["mount"]] = target
    resources = manifest.resources
    spec = sandbox.SandboxSpec(
        command=list(manifest.entrypoint),
        code_dir=code,
        inputs=inputs,
        output_dir=output,
        limits=sandbox.Limits(
            cpus=resources.cpus,
            memory_mb=resources.memory_mb,
            time_seconds=resources.time_limit_s,
            output_mb=resources.output_mb,
        ),
        env=job_environment(manifest.parameters, job_number=int(plan["number"])),
        log_dir=logs,
        uid=config.sandbox_uid,
        gid=config.sandbox_uid,
    )
    outcome = sandbox.run(spec, cancel=threading.Event())
    job_key = base64.b64decode(keys["job_key"])
    result: dict[str, Any] = {
        "state": outcome.state,
        "reason": outcome.reason,
        "exit_code": outcome.exit_code,
        "stdout_blob_id": store.put_stream([outputs.read_log(outcome.stdout_path)], job_key).blob_id,
        "stderr_blob_id": store.put_stream([outputs.read_log(outcome.stderr_path)], job_key).blob_id,
    }
    if outcome.state == "succeeded":
        collected = outputs.collect(output, store, base64.b64decode(keys["output_key"]))
        result["outputs"] = [
            {"path": p, "blob_id": i.blob_id, "size": i.size, "sha256": i.sha256} for p, i in collected.files
        ]
        result["skipped"] = len(collected.skipped)
        result["metrics"] = collected.metrics
        result["metrics_problem"] = collected.metrics_problem
    return result
