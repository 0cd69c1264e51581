"""A node's staging folders: one per running job, locked while it runs, wiped when it is not.

Why a lock file per job: a node runs several jobs at once, each in its own ``sanctum node run``
process, and a node that lost power or was killed leaves decrypted inputs on disk. A later
``sanctum node run`` (or ``sanctum node wipe`` at boot) must remove those folders but never the
folder of a job still running. The kernel drops an ``flock`` when its process dies, however it
died, so "the lock can be taken" means exactly "nobody is using this folder".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

_JOB_DIR = re.compile(r"job-[0-9]{1,12}")


def job_root(staging_dir: Path, job_id: int) -> Path:
    return staging_dir / f"job-{job_id}"


def _lock_path(root: Path) -> Path:
    return root.with_name(root.name + ".lock")


@contextlib.contextmanager
def held(root: Path) -> Iterator[Path]:
    """Hold ``root``'s lock while the job runs, and wipe ``root`` when it ends, whatever the outcome."""
    root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(_lock_path(root), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(f"another process is running {root.name} on this node") from None
    try:
        shutil.rmtree(root, ignore_errors=True)  # whatever an earlier, dead attempt left
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(_lock_path(root))
        os.close(fd)


def wipe_stale(staging_dir: Path) -> list[str]:
    """Remove the folders of jobs no process is running any more; returns their names."""
    wiped: list[str] = []
    if not staging_dir.is_dir():
        return wiped
    for entry in sorted(staging_dir.iterdir()):
        if not _JOB_DIR.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        fd = os.open(_lock_path(entry), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live job
            shutil.rmtree(entry, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(_lock_path(entry))
            wiped.append(entry.name)
        finally:
            os.close(fd)
    return wiped


class Terminated(SystemExit):
    """Slurm asked the job to stop (scancel, time limit, node shutdown): unwind and wipe."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated(128 + signum)


def stop_on_sigterm() -> None:
    """Turn SIGTERM into an exception, so ``finally`` blocks kill the sandbox and wipe staging.

    Python's default for SIGTERM is to die at once, running no ``finally`` at all; Slurm sends
    SIGTERM first and SIGKILL only after ``KillWait`` seconds, which is time enough to clean up.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
