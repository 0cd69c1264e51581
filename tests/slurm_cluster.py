"""A real single-node Slurm (munged + slurmctld + slurmd) for the tests, all state in one temp dir.

Loaded as a pytest plugin (``pytest_plugins = ["slurm_cluster"]`` in conftest.py). The cluster is
private: its own munged on its own socket and key (slurm.conf ``AuthInfo=socket=``), its own
ports, pid files, spool and state, so it never touches /etc/slurm, /etc/munge or a cluster already
on the machine. It runs the Prolog lines Sanctum tells administrators to use
(``slurm_conf_lines``), so the tests exercise the production configuration.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import missing
from sanctum.jobs.slurm import SlurmSettings
from sanctum.jobs.slurm_install import slurm_conf_lines, write_prolog

PARTITION = "sanctum"
PASS_PROLOG = "#!/bin/sh\nexit 0\n"
_SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
_DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
_CLIENTS = ("sbatch", "scontrol", "squeue", "scancel", "sinfo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:{_SBIN_PATH}")


@dataclass
class SlurmCluster:
    """The running cluster. ``env`` is for subprocesses (SLURM_CONF, sbin on PATH), ``settings`` for
    sanctum.jobs.slurm; ``set_prolog`` rewrites the Prolog (slurmd reads it afresh for every job);
    ``reset`` puts back a pass-through Prolog, cancels jobs and resumes the node."""

    root: Path
    conf: Path
    prolog: Path
    node: str
    partition: str
    env: dict[str, str]
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def settings(self) -> SlurmSettings:
        return SlurmSettings(partition=self.partition, conf=self.conf)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, check=check, timeout=30)

    def node_state(self) -> tuple[str, str]:
        """(state, reason) as sinfo reports the node, e.g. ("drained", "Prolog error")."""
        out = self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%T|%E").stdout.strip()
        state, _, reason = out.partition("|")
        return state, reason

    def wait_node(self, state: str, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while (current := self.node_state())[0] != state:
            if time.monotonic() > deadline:
                raise AssertionError(f"node is {current}, not {state}\n{self.logs()}")
            time.sleep(0.1)

    def resume_node(self) -> None:
        """Undrain after a failed Prolog, and wait until the node takes jobs again."""
        self.run("scontrol", "update", f"NodeName={self.node}", "State=RESUME")
        self.wait_node("idle")

    def set_prolog(self, text: str) -> None:
        write_prolog(self.prolog, text)

    def logs(self, lines: int = 30) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            path = self.root / "log" / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def reset(self) -> None:
        """Back to a pass-through Prolog, no jobs and an idle node, for the next test."""
        self.set_prolog(PASS_PROLOG)
        self.run("scancel", f"--partition={self.partition}", check=False)
        deadline = time.monotonic() + 20
        active = "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED"
        while self.run("squeue", "-h", "-t", active).stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.node_state()[0] != "idle":
            self.resume_node()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):  # no controller: stop the daemons anyway
            self.run("scancel", f"--partition={self.partition}", check=False)
        deadline = time.monotonic() + 10
        spool = self.root / "spool"
        # A job's slurmstepd outlives slurmd: wait until the steps' sockets are gone.
        while any(p.is_socket() for p in spool.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _slurm_conf(root: Path, node: str, prolog: Path, memory_mb: int) -> str:
    cpus = os.cpu_count() or 1
    lines = [
        "ClusterName=sanctumtest",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'run' / 'munge.socket'}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "JobAcctGatherType=jobacct_gather/none",
        "MpiDefault=none",
        "ReturnToService=2",
        # Test speed only: schedule within a second of a node coming back.
        "SchedulerParameters=bf_interval=1",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        *slurm_conf_lines(prolog),
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return max(256, int(line.split()[1]) // 1024 * 8 // 10)
    return 1024


def _start(cluster: SlurmCluster) -> None:
    root = cluster.root
    log, run = root / "log", root / "run"
    munge_dir = root / "munge"
    munge_dir.mkdir(mode=0o700)
    subprocess.run(["mungekey", "--create", f"--keyfile={munge_dir / 'munge.key'}"], check=True, timeout=30)
    cluster._procs.append(
        subprocess.Popen(
            [
                "munged",
                "--foreground",
                f"--socket={run / 'munge.socket'}",
                f"--key-file={munge_dir / 'munge.key'}",
                f"--log-file={log / 'munged.log'}",
                f"--pid-file={run / 'munged.pid'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=root,
        )
    )
    deadline = time.monotonic() + 10
    while not (run / "munge.socket").exists():
        if time.monotonic() > deadline or cluster._procs[-1].poll() is not None:
            raise RuntimeError(f"munged did not start\n{cluster.logs()}")
        time.sleep(0.05)
    for daemon in (["slurmctld", "-D", "-i"], ["slurmd", "-D"]):
        cluster._procs.append(
            # cwd: slurmd runs the Prolog in its own working directory.
            subprocess.Popen(
                daemon, env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root
            )
        )
    deadline = time.monotonic() + 25
    while True:
        dead = [p.args for p in cluster._procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{dead} exited during startup\n{cluster.logs()}")
        if cluster.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip() == "idle":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"node did not become idle within 25 s\n{cluster.logs()}")
        time.sleep(0.1)


def unavailable() -> str | None:
    """Why no private cluster can run here, or None when one can."""
    absent = [name for name in (*_DAEMONS, *_CLIENTS) if _which(name) is None]
    if absent:
        return f"Slurm/munge not installed ({', '.join(absent)}): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "the test Slurm cluster runs slurmd, which needs root"
    return None


@contextlib.contextmanager
def running_cluster() -> Iterator[SlurmCluster]:
    """Start a private cluster, and stop it and remove its files afterwards (bench/ uses it too)."""
    # Short path under /tmp: munge's socket must fit a sockaddr_un and its directory must be
    # world-searchable, which pytest's 0700 basetemp is not.
    root = Path(tempfile.mkdtemp(prefix="sanctum-slurm-"))
    root.chmod(0o755)
    for sub in ("log", "run", "state", "spool"):
        (root / sub).mkdir()
    node = socket.gethostname().split(".")[0]
    prolog = root / "prolog"
    write_prolog(prolog, PASS_PROLOG)
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, node, prolog, _memory_mb()))
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": f"{os.environ.get('PATH', '')}:{_SBIN_PATH}"}
    cluster = SlurmCluster(root, conf, prolog, node, PARTITION, env)
    try:
        _start(cluster)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The running cluster; a failing start shows the daemons' logs."""
    reason = unavailable()
    if reason:
        missing(reason)
    with running_cluster() as cluster:
        yield cluster
