"""What ``sanctum slurm install`` puts on a compute node: the Prolog and the slurm.conf lines.

The Prolog is the node-side gate of the SecureHPC workflow. slurmd runs it as root before any of a
job's processes exist on the node; when it exits non-zero, Slurm 22.05 drains the node and requeues
the job held (reason ``launch_failed_requeued_held``), so a job whose signed manifest does not verify
never runs. Everything the script does therefore fails closed: a missing Sanctum binary, a missing
job id, a timeout or a crash all refuse the job, because "could not check" must not mean "allowed".
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Sequence
from pathlib import Path

SYSLOG_TAG = "sanctum-prolog"

# slurmd gives the Prolog no PATH (Slurm's Prolog guide): the script sets its own.
_PROLOG_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_URL = re.compile(r"https?://[^\s'\"\\`$]+")

_TEMPLATE = """\
#!/bin/sh
# Sanctum node verification Prolog, written by `sanctum slurm install`. Do not edit: rerun it.
# slurmd runs this as root before a job starts on this node. Exit 0 lets the job run; any other
# exit makes Slurm drain the node and hold the job, so it must only exit 0 after Sanctum verified
# the job's signed manifest.
PATH={path}
export PATH
SANCTUM_URL={url}
export SANCTUM_URL
sanctum_bin={bin}

say() {{
    echo "{tag}: $*" >&2
    logger -t {tag} -p auth.warning -- "$*" 2>/dev/null || true
}}

if [ -z "${{SLURM_JOB_ID:-}}" ]; then
    say "SLURM_JOB_ID is not set: refusing"
    exit 1
fi
if [ ! -x "$sanctum_bin" ]; then
    say "job $SLURM_JOB_ID: $sanctum_bin is missing or not executable: refusing"
    exit 1
fi
if command -v timeout >/dev/null 2>&1; then
    output=$(timeout {timeout} "$sanctum_bin" node verify-prolog{args} 2>&1)
    status=$?
else
    output=$("$sanctum_bin" node verify-prolog{args} 2>&1)
    status=$?
fi
if [ "$status" -ne 0 ]; then
    say "job $SLURM_JOB_ID: verification failed (exit $status): $output"
    exit 1
fi
exit 0
"""


def prolog_script(
    sanctum_bin: Path, server_url: str, *, extra_args: Sequence[str] = (), timeout_s: int = 60
) -> str:
    """The /bin/sh Prolog that runs ``<sanctum_bin> node verify-prolog`` for ``$SLURM_JOB_ID``.

    The command's output is kept for the log rather than exec'd into, so that a refusal always
    says why in the slurmd log (Slurm 22.05 logs a failed Prolog's stderr) and in syslog.
    ``timeout_s`` bounds a hanging check (e.g. an unreachable server): a timeout refuses the job
    instead of leaving it starting forever. Every value is shell-quoted.
    """
    if not sanctum_bin.is_absolute():
        raise ValueError(f"sanctum_bin must be an absolute path (the Prolog has no PATH): {sanctum_bin}")
    if not _URL.fullmatch(server_url):
        raise ValueError(f"server_url must be an http(s) URL without spaces or quotes: {server_url!r}")
    if not 1 <= timeout_s <= 3600:
        raise ValueError("timeout_s must be between 1 and 3600 seconds")
    for text in (str(sanctum_bin), *extra_args):
        if any(ord(c) < 32 for c in text):
            raise ValueError(f"control characters are not allowed in the Prolog: {text!r}")
    args = "".join(f" {shlex.quote(a)}" for a in extra_args)
    return _TEMPLATE.format(
        path=_PROLOG_PATH,
        url=shlex.quote(server_url),
        bin=shlex.quote(str(sanctum_bin)),
        tag=SYSLOG_TAG,
        timeout=timeout_s,
        args=args,
    )


def write_prolog(path: Path, text: str) -> None:
    """Install ``text`` at ``path`` (mode 0755) by rename, so slurmd, which executes the file afresh
    for every job, never runs a half-written script."""
    if not text.startswith("#!"):
        raise ValueError("a Prolog must start with a #! line")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o755)  # noqa: S103 - slurmd must execute it; it holds no secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def slurm_conf_lines(prolog_path: Path) -> list[str]:
    """The lines an administrator adds to slurm.conf on every node and the controller.

    ``PrologFlags=Alloc`` is not needed for a batch job's Prolog to run first (22.05 runs it on the
    batch host before the batch step without it), but with it the Prolog runs at allocation on every
    allocated node, also for salloc, and a refused job's output file is never created.
    ``DeferBatch`` keeps the batch script from starting until the Prolog passed on all nodes.
    """
    if not prolog_path.is_absolute():
        raise ValueError(f"slurm.conf needs an absolute Prolog path: {prolog_path}")
    if any(c.isspace() for c in str(prolog_path)):
        raise ValueError(f"slurm.conf cannot hold a Prolog path with spaces: {prolog_path}")
    return [f"Prolog={prolog_path}", "PrologFlags=Alloc,DeferBatch"]
