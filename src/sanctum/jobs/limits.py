"""Resource limits for a sandboxed job, and the host-side watchdog that enforces the ones the kernel can't.

This host has no usable cgroup v2 controller for memory or pids (see :func:`cgroup_v2_controllers`), so the
limits are layered: the kernel enforces per-process rlimits (set by ``prlimit`` before bubblewrap starts) and
a watchdog in the server process polls the job's process tree and output directory for the totals that
rlimits cannot express (memory summed over processes, bytes summed over files).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import psutil

MIB = 1024 * 1024
POLL_SECONDS = 0.1
OUTPUT_POLL_SECONDS = 0.25
# A job may create this many files in /output; beyond that it is treated as filling the disk (inodes).
MAX_OUTPUT_FILES = 100_000
_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Limits:
    cpus: int = 1  # the job may use at most this many CPUs
    memory_mb: int = 2048
    time_seconds: int = 3600  # wall clock; killed after
    output_mb: int = 1024  # total bytes the job may write to /output
    processes: int = 256  # fork-bomb guard (threads count too: the kernel counts tasks)
    tmp_mb: int = 256  # size of the in-memory /tmp (and of /dev/shm)
    log_mb: int = 10  # each of stdout.log and stderr.log is cut off after this many MiB

    def __post_init__(self) -> None:
        for name in ("cpus", "memory_mb", "time_seconds", "output_mb", "processes", "tmp_mb", "log_mb"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"limit {name} must be a positive integer, got {value!r}")
        if self.processes < 8:
            # bubblewrap itself needs two tasks and Python's runtime a few more before the job runs at all.
            raise ValueError("limit processes must be at least 8")


def cgroup_v2_controllers() -> set[str]:
    """The cgroup v2 controllers we could use, or an empty set.

    Only a pure cgroup v2 mount at /sys/fs/cgroup (not the v1 "hybrid" layout, whose unified tree usually has
    no controllers delegated) with a writable root counts. The sandbox uses rlimits plus the watchdog whenever
    ``{"memory", "pids"}`` is not a subset of this; the cgroup path is not implemented yet because no host we
    test on offers it, and an enforcement path that has never run is worse than a documented fallback.
    """
    controllers = _CGROUP_ROOT / "cgroup.controllers"
    try:
        available = set(controllers.read_text().split())
    except OSError:
        return set()
    return available if os.access(_CGROUP_ROOT, os.W_OK) else set()


def enforcement() -> str:
    """One line for logs and the admin page: how limits are enforced on this host."""
    if {"memory", "pids"} <= cgroup_v2_controllers():
        return "cgroup v2 available but unused: rlimits + watchdog (cgroup enforcement not implemented)"
    return "rlimits (AS, NPROC, FSIZE, CPU) + CPU affinity + watchdog (wall clock, total RSS, tasks, /output)"


def prlimit_args(limits: Limits) -> list[str]:
    """``prlimit`` options (hard = soft, so the job cannot raise them back)."""
    memory = limits.memory_mb * MIB
    cpu_seconds = limits.time_seconds * limits.cpus + 5
    return [
        f"--as={memory}:{memory}",
        f"--nproc={limits.processes}:{limits.processes}",
        f"--fsize={limits.output_mb * MIB}:{limits.output_mb * MIB}",
        f"--cpu={cpu_seconds}:{cpu_seconds}",
        "--core=0:0",  # a core dump of a job holds its data; it must not land anywhere
    ]


_next_cpu = itertools.count()
_cpu_lock = threading.Lock()


def cpu_list(cpus: int) -> str:
    """The CPUs to pin the next job to, rotating so that concurrent one-CPU jobs do not all share CPU 0."""
    allowed = sorted(os.sched_getaffinity(0))
    count = min(cpus, len(allowed))
    with _cpu_lock:
        start = next(_next_cpu) % len(allowed)
    chosen = [allowed[(start + i) % len(allowed)] for i in range(count)]
    return ",".join(str(c) for c in sorted(chosen))


def dir_usage(root: Path) -> tuple[int, int]:
    """(bytes, files) under root; bytes counts the larger of apparent and allocated size of each file.

    Apparent size catches sparse files that would balloon when copied out; allocated size catches disk use.
    Symlinks are not followed (the job could point one at /usr).
    """
    total = files = 0
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            files += 1
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += max(st.st_size, st.st_blocks * 512)
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return total, files


@dataclass
class Usage:
    rss_bytes: int = 0
    tasks: int = 0
    procs: list[psutil.Process] = field(default_factory=list)


def sample_tree(root_pid: int) -> Usage:
    """Resident memory and task count of everything below root_pid (the outer bubblewrap process).

    Processes that daemonise stay below it: they are re-parented to bubblewrap's init in the pid namespace.
    """
    try:
        children = psutil.Process(root_pid).children(recursive=True)
    except psutil.Error:
        return Usage()
    usage = Usage(procs=children)
    for child in children:
        try:
            with child.oneshot():
                usage.rss_bytes += child.memory_info().rss
                usage.tasks += child.num_threads()
        except psutil.Error:
            continue
    return usage


@dataclass
class Watch:
    """What the polling loop saw; decides the state when the loop had to stop the job."""

    stop_state: str | None = None
    stop_reason: str = ""
    peak_rss: int = 0
    peak_tasks: int = 0
    output_bytes: int = 0
    procs: list[psutil.Process] = field(default_factory=list)

    def stop(self, state: str, reason: str) -> None:
        if self.stop_state is None:
            self.stop_state, self.stop_reason = state, reason


def kill(proc: subprocess.Popen[bytes] | None, procs: list[psutil.Process]) -> None:
    """SIGKILL bwrap's process group, then every process we last saw in the job (psutil guards pid reuse).

    Pass proc only while it is not yet reaped: a zombie keeps its pid, so the group id cannot have been
    reused by an unrelated process.

    Killing the outer bwrap also takes the pid namespace down: its init has PR_SET_PDEATHSIG, and when a
    namespace's init dies the kernel kills every process left in it, including ones that called setsid().
    """
    if proc is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()


def watch(
    proc: subprocess.Popen[bytes], limits: Limits, output_dir: Path, cancel: threading.Event | None
) -> Watch:
    """Poll until the job exits; stop it (and say why) on cancel, timeout or a broken total limit."""
    watch = Watch()
    deadline = time.monotonic() + limits.time_seconds
    # A pidfd wakes us the moment bwrap exits (Popen.wait(timeout) sleeps in steps of up to 50 ms).
    exited = select.poll()
    pidfd = os.pidfd_open(proc.pid)
    exited.register(pidfd, select.POLLIN)
    try:
        return _poll(proc, exited, watch, limits, deadline, output_dir, cancel)
    finally:
        os.close(pidfd)


def _poll(
    proc: subprocess.Popen[bytes],
    exited: select.poll,
    watch: Watch,
    limits: Limits,
    deadline: float,
    output_dir: Path,
    cancel: threading.Event | None,
) -> Watch:
    next_output = 0.0
    while True:
        if exited.poll(POLL_SECONDS * 1000):
            proc.wait()
            return watch
        usage = sample_tree(proc.pid)
        if usage.procs:
            watch.procs = usage.procs
        watch.peak_rss = max(watch.peak_rss, usage.rss_bytes)
        watch.peak_tasks = max(watch.peak_tasks, usage.tasks)
        now = time.monotonic()
        if cancel is not None and cancel.is_set():
            watch.stop("cancelled", "cancelled")
        elif now >= deadline:
            watch.stop("timed_out", f"exceeded the time limit of {limits.time_seconds} s")
        elif usage.rss_bytes > limits.memory_mb * MIB:
            watch.stop("memory_exceeded", f"exceeded the memory limit of {limits.memory_mb} MiB")
        elif usage.tasks >= limits.processes:
            watch.stop("process_limit", f"reached the process limit of {limits.processes}")
        elif now >= next_output:
            next_output = now + OUTPUT_POLL_SECONDS
            watch.output_bytes, files = dir_usage(output_dir)
            if watch.output_bytes > limits.output_mb * MIB:
                watch.stop("output_exceeded", f"exceeded the output limit of {limits.output_mb} MiB")
            elif files > MAX_OUTPUT_FILES:
                watch.stop("output_exceeded", f"wrote more than {MAX_OUTPUT_FILES} files to /output")
        if watch.stop_state is not None:
            kill(proc, watch.procs)
            proc.wait()
            return watch


_MEMORY_MARKERS = (
    "MemoryError",
    "Cannot allocate memory",
    "bad_alloc",
    "Unable to allocate",
    "out of memory",
)
_PROCESS_MARKERS = ("Resource temporarily unavailable", "can't start new thread", "fork: retry")
_OUTPUT_MARKERS = ("File too large", "No space left on device", "Disk quota exceeded")


def classify(code: int, started: bool, stderr_tail: str, limits: Limits) -> tuple[str, str]:
    """State and reason for a job that ended by itself (the watchdog did not stop it).

    The kernel reports a broken rlimit only as a failed call inside the job, so a non-zero exit is attributed
    to a limit when the job's own stderr shows the matching error. A job can only mislabel its own failure.
    """
    if not started:
        line = stderr_tail.strip().splitlines()[-1:] or ["no message"]
        return "failed", f"the sandbox could not start: {line[0]}"
    if code == 0:
        return "succeeded", "exit code 0"
    if code == 128 + signal.SIGXFSZ:
        return "output_exceeded", f"a file exceeded the output limit of {limits.output_mb} MiB"
    if code == 128 + signal.SIGXCPU:
        return "timed_out", f"exceeded the CPU time limit of {limits.time_seconds * limits.cpus} s"
    if any(m in stderr_tail for m in _MEMORY_MARKERS):
        return "memory_exceeded", f"exceeded the memory limit of {limits.memory_mb} MiB"
    if any(m in stderr_tail for m in _PROCESS_MARKERS):
        return "process_limit", f"reached the process limit of {limits.processes}"
    if any(m in stderr_tail for m in _OUTPUT_MARKERS):
        return "output_exceeded", (
            f"ran out of space (output limit {limits.output_mb} MiB, /tmp limit {limits.tmp_mb} MiB)"
        )
    if code > 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            return "failed", f"exit code {code}"
        return "failed", f"killed by signal {name}"
    return "failed", f"exit code {code}"


class LogPump(threading.Thread):
    """Copies a pipe to a file, keeping at most ``cap`` bytes and draining the rest: the job never blocks."""

    def __init__(self, source: BinaryIO, target: Path, cap: int) -> None:
        super().__init__(daemon=True, name=f"sandbox-log-{target.name}")
        self.source, self.target, self.cap = source, target, cap

    def run(self) -> None:
        written = 0
        truncated = False
        with self.target.open("wb") as out:
            while chunk := self.source.read1(65536):
                if written < self.cap:
                    keep = chunk[: self.cap - written]
                    out.write(keep)
                    out.flush()  # live logs: a reader sees each line as the job prints it
                    written += len(keep)
                    truncated = truncated or len(keep) < len(chunk)
                else:
                    truncated = True
            if truncated:
                out.write(f"\n[sanctum: log truncated at {self.cap // MIB} MiB]\n".encode())
        self.source.close()


def wait_dead(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until none of procs runs any more; returns the ones still running after timeout.

    A zombie counts as dead: it runs no code and holds no memory, and the host's init reaps it in its own time
    (psutil.wait_procs would wait for that reaping, which can take seconds).
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for p in procs:
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)
