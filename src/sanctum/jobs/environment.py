"""What a job's process sees of its parameters: the same for the local runner and a Slurm node."""

from __future__ import annotations

import json


def job_environment(parameters: dict[str, object], *, job_number: int) -> dict[str, str]:
    """Parameters reach the job as ``SANCTUM_PARAM_<NAME>`` and all together as JSON."""
    env = {f"SANCTUM_PARAM_{name.upper()}": _text(value) for name, value in parameters.items()}
    env["SANCTUM_PARAMS"] = json.dumps(parameters, sort_keys=True)
    env["SANCTUM_JOB"] = str(job_number)
    return env


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
