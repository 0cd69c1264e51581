"""Sanctum's low-level Slurm wrapper: the Slurm command-line tools, called without a shell.

Only commands that work without slurmdbd are used (``scontrol show job`` rather than ``sacct``), so
Sanctum needs nothing from a cluster beyond a partition and the Prolog. Every value that reaches a
Slurm command is validated first: names against a strict pattern, paths for Slurm's ``%`` patterns,
scripts for ``#SBATCH`` directives (Sanctum, not a job's author, decides partition and resources).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Not a Slurm state: the controller no longer knows the job (purged MinJobAge after it ended).
GONE = "GONE"
TERMINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
        GONE,
    }
)
# Reasons with which a pending job stays pending until someone acts; the first is what a failed
# Prolog leaves on Slurm 22.05.
HELD_REASONS = frozenset({"launch_failed_requeued_held", "JobHeldAdmin", "JobHeldUser"})

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_JOB_ID = re.compile(r"[0-9]{1,12}")
_DIRECTIVE = re.compile(r"^#(SBATCH|PBS)", re.MULTILINE)
_FIELD_SPLIT = re.compile(r"\s+(?=[A-Za-z][\w:/]*=)")
_COMMAND_TIMEOUT_S = 60
_INVALID_JOB = "Invalid job id specified"


class SlurmError(Exception):
    """A Slurm command failed; the message carries the command and its stderr."""

    def __init__(self, command: Sequence[str], returncode: int, stderr: str) -> None:
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(
            f"{' '.join(self.command[:2])} failed (exit {returncode}): {self.stderr or 'no output'}"
        )


def _check_name(kind: str, value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"invalid Slurm {kind} {value!r}: use letters, digits, '.', '_' and '-'")
    return value


def _check_job_id(job_id: str) -> str:
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"invalid Slurm job id {job_id!r}")
    return job_id


def _check_path(kind: str, path: Path) -> str:
    text = str(path)
    if not path.is_absolute():
        raise ValueError(f"{kind} must be an absolute path (it is resolved on the compute node): {text}")
    if any(ord(c) < 32 for c in text) or "%" in text or "\\" in text:
        # sbatch expands %j, %u, ... in --output and treats a backslash as "no expansion".
        raise ValueError(f"{kind} must not contain control characters, '%' or '\\': {text!r}")
    return text


@dataclass(frozen=True)
class SlurmSettings:
    """Where Sanctum's jobs go: the partition, and the slurm.conf the commands read (None: the
    system's own, normally /etc/slurm/slurm.conf)."""

    partition: str
    conf: Path | None = None

    def __post_init__(self) -> None:
        _check_name("partition", self.partition)

    def env(self) -> dict[str, str]:
        """The environment for Slurm commands: this process's, without the ``SBATCH_*``,
        ``SLURM_*``, ``SALLOC_*`` and ``SRUN_*`` variables that sbatch and scontrol read as options
        and that would silently change where or how a job runs. ``SLURM_CONF`` is ``conf`` when set,
        else the administrator's ``SLURM_CONF``, if any."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SBATCH_", "SLURM_", "SALLOC_", "SRUN_"))
        }
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        env["LC_ALL"] = "C"
        conf = str(self.conf) if self.conf is not None else os.environ.get("SLURM_CONF")
        if conf:
            env["SLURM_CONF"] = conf
        return env


@dataclass(frozen=True)
class SlurmJob:
    """One job as the controller sees it. ``exit_code`` is set once the job is terminal; a job
    killed by a signal (e.g. cancelled) keeps the exit code Slurm records, often 0."""

    job_id: str
    state: str
    node: str | None
    reason: str | None
    exit_code: int | None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def held(self) -> bool:
        """Pending and never going to start by itself, e.g. after a failed Prolog."""
        return self.state == "PENDING" and self.reason in HELD_REASONS


def _run(
    settings: SlurmSettings, args: list[str], *, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            args,
            input=stdin,
            capture_output=True,
            text=True,
            env=settings.env(),
            timeout=_COMMAND_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise SlurmError(args, 127, f"{args[0]} is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise SlurmError(args, -1, f"no answer within {_COMMAND_TIMEOUT_S} s (is slurmctld up?)") from exc


def _time_limit(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)  # Slurm's granularity is the minute
    return f"{minutes // 60}:{minutes % 60:02d}:00"


def submit(
    settings: SlurmSettings,
    script: str,
    *,
    job_name: str,
    cpus: int,
    memory_mb: int,
    time_limit_s: int,
    workdir: Path,
    output: Path,
) -> str:
    """Submit ``script`` (given to sbatch on stdin) as a one-node batch job; returns the job id.

    ``--export=NONE`` keeps this process's environment (tokens, keys, database URLs) away from the
    job; stdout and stderr both go to ``output``.
    """
    _check_name("job name", job_name)
    if not script.startswith("#!"):
        raise ValueError("a batch script must start with a #! line")
    if _DIRECTIVE.search(script):
        raise ValueError("the script must not carry #SBATCH or #PBS directives: Sanctum sets the options")
    if "\0" in script:
        raise ValueError("the script must not contain NUL bytes")
    for name, value in (("cpus", cpus), ("memory_mb", memory_mb), ("time_limit_s", time_limit_s)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")
    args = [
        "sbatch",
        "--export=NONE",
        "--parsable",
        "--ignore-pbs",
        f"--partition={settings.partition}",
        f"--job-name={job_name}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={cpus}",
        f"--mem={memory_mb}M",
        f"--time={_time_limit(time_limit_s)}",
        f"--chdir={_check_path('workdir', workdir)}",
        f"--output={_check_path('output', output)}",
    ]
    result = _run(settings, args, stdin=script)
    job_id = result.stdout.strip().split(";")[0]
    if result.returncode != 0 or not _JOB_ID.fullmatch(job_id):
        raise SlurmError(args, result.returncode, result.stderr or result.stdout)
    return job_id


def parse_job(text: str) -> dict[str, str]:
    """``scontrol show job -o`` output as a dict. Values are split at `` Key=``, so only values
    Sanctum does not read (a path with `` x=`` in it) could be cut short."""
    fields: dict[str, str] = {}
    for item in _FIELD_SPLIT.split(text.strip()):
        key, sep, value = item.partition("=")
        if sep:
            fields[key] = value
    return fields


def _none(value: str | None) -> str | None:
    return None if value in (None, "", "None", "(null)") else value


def job(settings: SlurmSettings, job_id: str) -> SlurmJob:
    """The job's state now. A job the controller no longer knows has state ``GONE``."""
    args = ["scontrol", "show", "job", "-o", _check_job_id(job_id)]
    result = _run(settings, args)
    if result.returncode != 0:
        if _INVALID_JOB in result.stderr:
            return SlurmJob(job_id, GONE, None, "the controller no longer knows this job", None)
        raise SlurmError(args, result.returncode, result.stderr)
    fields = parse_job(result.stdout.splitlines()[0] if result.stdout else "")
    state = fields.get("JobState")
    if not state:
        raise SlurmError(args, result.returncode, f"unexpected output: {result.stdout[:200]!r}")
    exit_code = None
    if state in TERMINAL_STATES and ":" in fields.get("ExitCode", ""):
        exit_code = int(fields["ExitCode"].split(":")[0])
    node = _none(fields.get("BatchHost")) or _none(fields.get("NodeList"))
    return SlurmJob(job_id, state, node, _none(fields.get("Reason")), exit_code)


def cancel(settings: SlurmSettings, job_id: str) -> None:
    """Cancel the job; cancelling a job that already ended or is gone is not an error.

    scancel exits 0 even when it fails, and says why only with ``--verbose``.
    """
    args = ["scancel", "--verbose", _check_job_id(job_id)]
    result = _run(settings, args)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    harmless = (_INVALID_JOB, "already completing or completed")
    if result.returncode != 0 or any(not any(h in line for h in harmless) for line in errors):
        raise SlurmError(args, result.returncode, "\n".join(errors) or result.stderr)


def batch_script(settings: SlurmSettings, job_id: str) -> str:
    """The job's script as the controller holds it: what the node will run, whatever was submitted.

    ``scontrol write batch_script`` exits 0 even for an unknown job; its stderr tells.
    """
    args = ["scontrol", "write", "batch_script", _check_job_id(job_id), "-"]
    result = _run(settings, args)
    if result.returncode != 0 or "failed" in result.stderr or not result.stdout:
        raise SlurmError(args, result.returncode, result.stderr)
    return result.stdout


def wait(settings: SlurmSettings, job_id: str, *, timeout_s: float) -> SlurmJob:
    """Poll until the job is finished (a terminal state or ``GONE``) or held, i.e. until Slurm will
    not do anything more with it by itself; a job refused by the Prolog returns held rather than
    running into the timeout. Raises TimeoutError with the last state seen."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        current = job(settings, job_id)
        if current.finished or current.held:
            return current
        if time.monotonic() + delay > deadline:
            raise TimeoutError(f"Slurm job {job_id} is still {current.state} ({current.reason})")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
