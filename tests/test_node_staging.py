"""A node's staging folders: a live job's folder survives a wipe; a dead one's does not."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sanctum.jobs import node_staging


def test_held_wipes_the_folder_when_the_job_ends_whatever_happened(tmp_path):
    root = node_staging.job_root(tmp_path, 7)
    with pytest.raises(ZeroDivisionError), node_staging.held(root):
        (root / "data").mkdir(parents=True)
        (root / "data" / "scan.dcm").write_bytes(b"plaintext")
        1 / 0  # noqa: B018 - the job's code failed
    assert not root.exists() and list(tmp_path.iterdir()) == []


def test_a_wipe_keeps_live_jobs_and_removes_what_dead_ones_left(tmp_path):
    live = node_staging.job_root(tmp_path, 1)
    dead = node_staging.job_root(tmp_path, 2)
    (dead / "data").mkdir(parents=True)
    (dead / "data" / "rec.edf").write_bytes(b"plaintext")  # a node that lost power left this
    (tmp_path / "notes").mkdir()  # not a job folder: never touched
    with node_staging.held(live):
        (live / "data").mkdir(parents=True)
        assert node_staging.wipe_stale(tmp_path) == ["job-2"]
        assert (live / "data").is_dir() and not dead.exists()
        with pytest.raises(RuntimeError, match="another process"), node_staging.held(live):
            pass  # the same job twice: refused
    assert (tmp_path / "notes").is_dir()


def test_a_killed_process_no_longer_holds_its_folder(tmp_path):
    """SIGKILL runs no ``finally``: the folder stays, but the kernel drops the lock with the process."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from sanctum.jobs import node_staging\n"
        "with node_staging.held(node_staging.job_root(Path(sys.argv[1]), 3)) as root:\n"
        "    (root / 'data').mkdir(parents=True)\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    assert node_staging.wipe_stale(tmp_path) == []  # running: kept
    proc.kill()
    proc.wait()
    assert (tmp_path / "job-3" / "data").is_dir()
    assert node_staging.wipe_stale(tmp_path) == ["job-3"]
    assert not (tmp_path / "job-3").exists()


def test_sigterm_unwinds_so_the_folder_is_wiped(tmp_path):
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from sanctum.jobs import node_staging\n"
        "node_staging.stop_on_sigterm()\n"
        "with node_staging.held(node_staging.job_root(Path(sys.argv[1]), 4)) as root:\n"
        "    (root / 'data').mkdir(parents=True)\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.terminate()
    assert proc.wait(timeout=30) == 128 + 15
    deadline = time.monotonic() + 5
    while (tmp_path / "job-4").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (tmp_path / "job-4").exists()
    assert not Path(tmp_path / "job-4.lock").exists() and os.listdir(tmp_path) == []
