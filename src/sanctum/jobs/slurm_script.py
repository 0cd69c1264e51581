"""The batch script the server gives Slurm, and reading a job's id back out of it on the node.

Free of database imports: the node's Prolog and agent read it at every job start.
"""

from __future__ import annotations

import shlex
from pathlib import Path

JOB_MARKER = "# sanctum-job:"


def spool_dir(root: Path, job_id: int) -> Path:
    return root / f"job-{job_id}"


def batch_script(
    job_id: int, sanctum_bin: str, server_url: str, manifest_sha256: str, node_dir: Path | None = None
) -> str:
    """What Slurm runs on the node: the node agent for this job, nothing else."""
    directory = f" --dir {shlex.quote(str(node_dir))}" if node_dir else ""
    return (
        "#!/bin/sh\n"
        f"{JOB_MARKER} {job_id}\n"
        f"# sanctum-manifest-sha256: {manifest_sha256}\n"
        f"SANCTUM_URL={shlex.quote(server_url)}\nexport SANCTUM_URL\n"
        f"exec {shlex.quote(sanctum_bin)} node run {job_id}{directory}\n"
    )


def job_id_from_script(script: str) -> int | None:
    for line in script.splitlines():
        if line.startswith(JOB_MARKER):
            value = line[len(JOB_MARKER) :].strip()
            return int(value) if value.isdigit() else None
    return None
