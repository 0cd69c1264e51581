"""Run one researcher job in a bubblewrap sandbox on this host (the local executor).

The job sees a read-only minimal root (system libraries, the platform's Python), its code at /code, its
decrypted inputs at /data/<name>, a writable /output and a small /tmp, and nothing else: no network, no host
processes, no host environment. It runs as an unprivileged uid so that an escape from the namespaces lands
as nobody rather than as the server's root. See docs/jobs-sandbox.md for what is enforced how.

Why the launch chain is ``unshare -m -> sh (bind mounts) -> setpriv -> prlimit -> taskset -> bwrap``: bwrap
running as nobody must be able to resolve every bind source, but the platform's Python may live under a
0700 directory (/root/.pyenv here) and the lead's staging directory is private too. A throw-away private mount
namespace, made while still root, re-exposes exactly the needed directories under a 0711 tmpfs; the host's
mount table never changes and nobody on the host gains access to anything.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import sanctum
from sanctum.jobs import limits
from sanctum.jobs.limits import MIB, Limits, cpu_list, dir_usage, prlimit_args

__all__ = ["Limits", "SandboxResult", "SandboxSpec", "available", "run"]

NOBODY = 65534
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_INPUT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MAX_ENV_BYTES = 128 * 1024
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")

# Runs as root inside a fresh private mount namespace. Arguments: stage dir, bind sources..., "--", command.
_STAGE_SCRIPT = """set -eu
stage=$1; shift
mount -t tmpfs -o mode=0711,size=64k,nosuid,nodev,noexec sanctum-stage "$stage"
i=0
while [ "$1" != "--" ]; do
  mkdir "$stage/$i"
  mount --bind "$1" "$stage/$i"
  i=$((i + 1))
  shift
done
shift
exec "$@"
"""

STATES = (
    "succeeded",
    "failed",
    "timed_out",
    "memory_exceeded",
    "output_exceeded",
    "process_limit",
    "cancelled",
)


@dataclass(frozen=True)
class SandboxSpec:
    command: list[str]  # argv inside the sandbox, e.g. ["python", "train.py", "--lr", "0.1"]
    code_dir: Path  # the job's code bundle: read-only at /code, the working directory
    inputs: dict[str, Path]  # dataset name -> host dir of decrypted files, read-only at /data/<name>
    output_dir: Path  # host dir, read-write at /output (the only writable place besides /tmp)
    limits: Limits
    env: dict[str, str]  # extra environment (job parameters); the host environment is NOT inherited
    log_dir: Path  # where stdout.log / stderr.log are written on the host (outside the sandbox)
    uid: int = NOBODY  # host uid (and gid) the job runs as when the server is root; give concurrent jobs
    gid: int = NOBODY  # distinct ids so that their process limits are not shared


@dataclass
class SandboxResult:
    state: str  # one of STATES
    reason: str  # for a person: "exit code 3", "exceeded the time limit of 5 s", ...
    exit_code: int | None
    started_at: datetime
    ended_at: datetime
    stdout_path: Path
    stderr_path: Path
    peak_rss_bytes: int = 0
    peak_tasks: int = 0
    output_bytes: int = 0


class SandboxError(RuntimeError):
    """The sandbox cannot run on this host (missing tool); distinct from a job that fails."""


def _validate(spec: SandboxSpec) -> None:
    """Refuse a spec before anything runs: these come from a researcher's signed job and the API."""
    if not isinstance(spec.limits, Limits):
        raise ValueError("limits must be a Limits")
    if not spec.command or not all(isinstance(a, str) and a and "\0" not in a for a in spec.command):
        raise ValueError("command must be a non-empty list of non-empty strings without NUL")
    size = 0
    for name, value in spec.env.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ValueError(f"invalid environment variable name {name!r}")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"environment variable {name} must be a string without NUL")
        size += len(name) + len(value.encode()) + 2
    if size > _MAX_ENV_BYTES:
        raise ValueError(f"environment is larger than {_MAX_ENV_BYTES} bytes")
    for name, path in spec.inputs.items():
        if not isinstance(name, str) or not _INPUT_NAME.fullmatch(name):
            raise ValueError(f"invalid input name {name!r}: letters, digits, '.', '_' and '-' only")
        if not Path(path).is_dir():
            raise ValueError(f"input {name}: {path} is not a directory")
    if not Path(spec.code_dir).is_dir():
        raise ValueError(f"code_dir {spec.code_dir} is not a directory")
    for value in (spec.uid, spec.gid):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**32 - 1:
            raise ValueError("uid and gid must be positive integers (never root)")


def _env(spec: SandboxSpec) -> dict[str, str]:
    threads = str(spec.limits.cpus)
    env = {
        "PATH": f"{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",  # noqa: S108 (the sandbox's own private tmpfs)
        "TMPDIR": "/tmp",  # noqa: S108
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        # BLAS/OpenMP size their pools from the CPU count of the host, not the affinity mask.
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
    }
    env.update(spec.env)
    return env


def _memfd(name: str, text: str) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, text.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _etc_files(uid: int, gid: int) -> dict[str, str]:
    """The whole of /etc inside: enough for getpwuid(), locale and name lookups to fail cleanly."""
    return {
        "/etc/passwd": f"job:x:{uid}:{gid}:Sanctum job:/tmp:/usr/sbin/nologin\n",
        "/etc/group": f"job:x:{gid}:\n",
        "/etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
        "/etc/hosts": "127.0.0.1 localhost\n",
        "/etc/hostname": "sanctum-job\n",
    }


def _python_dirs() -> list[str]:
    """The platform's Python, read-only: the interpreter, its libraries and the sanctum package.

    The package is named on its own because an editable install (``pip install -e``) leaves it in
    the source tree, outside both prefixes; jobs import ``sanctum.tracking.trial`` from it. Only the
    package folder is mounted, not the tree around it.
    """
    dirs = [os.path.realpath(sys.base_prefix)]
    if os.path.realpath(sys.prefix) not in dirs:
        dirs.append(os.path.realpath(sys.prefix))
    package = os.path.realpath(os.path.dirname(sanctum.__file__))
    if not any(package.startswith(d + os.sep) for d in dirs):
        dirs.append(package)
    return dirs


def _bwrap_args(
    spec: SandboxSpec,
    binds: list[tuple[str, str, str]],
    data_fds: dict[str, int],
    status_fd: int,
    ids: tuple[int, int],
) -> list[str]:
    """bwrap's argv. ``binds`` is (option, host source, sandbox destination)."""
    limits = spec.limits
    args = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent"]
    args += ["--new-session", "--uid", str(ids[0]), "--gid", str(ids[1])]
    args += ["--hostname", "sanctum-job"]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    args += ["--ro-bind-try", "/etc/localtime", "/etc/localtime"]
    for dest, fd in data_fds.items():
        args += ["--ro-bind-data", str(fd), dest]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(limits.tmp_mb * MIB), "--tmpfs", "/dev/shm"]  # noqa: S108
    args += ["--size", str(limits.tmp_mb * MIB), "--perms", "1777", "--tmpfs", "/tmp"]  # noqa: S108
    args += ["--dir", "/data"]
    for option, source, dest in binds:
        args += [option, source, dest]
    # bwrap's root and /dev are unsized tmpfs: left writable they would be a way round every disk limit.
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]
    args += ["--chdir", "/code", "--clearenv"]
    for name, value in _env(spec).items():
        args += ["--setenv", name, value]
    args += ["--json-status-fd", str(status_fd), "--", *spec.command]
    return args


def _grant(spec: SandboxSpec) -> None:
    """Let the sandbox uid read code and inputs and write the output dir (only needed when we are root).

    Unreadable entries are given to the job's group (g+r, g+x on dirs) rather than made world-readable;
    the output tree is handed to the job's uid. Read-only mounts stop the job from changing code or inputs
    even where it owns them.
    """
    for tree in [Path(spec.code_dir), *map(Path, spec.inputs.values())]:
        for path in [tree, *tree.rglob("*")]:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            need = stat.S_IRGRP | (stat.S_IXGRP if stat.S_ISDIR(st.st_mode) else 0)
            other = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else 0)
            owner = stat.S_IRUSR | (stat.S_IXUSR if stat.S_ISDIR(st.st_mode) else 0)
            if st.st_mode & other == other or (st.st_uid == spec.uid and st.st_mode & owner == owner):
                continue
            if st.st_gid != spec.gid:
                os.chown(path, -1, spec.gid, follow_symlinks=False)
            os.chmod(path, stat.S_IMODE(st.st_mode) | need)
    output = Path(spec.output_dir)
    for path in [output, *output.rglob("*")]:
        os.chown(path, spec.uid, spec.gid, follow_symlinks=False)


def _launcher(spec: SandboxSpec, stage: Path | None, status_fd: int, data_fds: dict[str, int]) -> list[str]:
    mounts: list[tuple[str, str, str]] = []
    for path in _python_dirs():
        mounts.append(("--ro-bind", path, path))
    mounts.append(("--ro-bind", os.path.realpath(spec.code_dir), "/code"))
    for name, path in sorted(spec.inputs.items()):
        mounts.append(("--ro-bind", os.path.realpath(path), f"/data/{name}"))
    mounts.append(("--bind", os.path.realpath(spec.output_dir), "/output"))
    limits_chain = ["prlimit", *prlimit_args(spec.limits), "--", "taskset", "-c", cpu_list(spec.limits.cpus)]
    if stage is None:  # not root: bwrap can reach the sources itself, and there is no uid to drop to
        binds = mounts
        return [*limits_chain, *_bwrap_args(spec, binds, data_fds, status_fd, (os.getuid(), os.getgid()))]
    binds = [(option, f"{stage}/{i}", dest) for i, (option, _, dest) in enumerate(mounts)]
    bwrap = _bwrap_args(spec, binds, data_fds, status_fd, (spec.uid, spec.gid))
    return [
        "unshare", "--mount", "--propagation", "private", "--",
        "sh", "-c", _STAGE_SCRIPT, "sanctum-stage", str(stage), *(source for _, source, _ in mounts), "--",
        "setpriv", f"--reuid={spec.uid}", f"--regid={spec.gid}", "--clear-groups", "--",
        *limits_chain, *bwrap,
    ]  # fmt: skip


def _tail(path: Path, size: int = 65536) -> str:
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read().decode("utf-8", "replace")


def _read_status(fd: int) -> tuple[bool, int | None]:
    """(child started, exit code) from bwrap's --json-status-fd stream."""
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    text = b"".join(chunks).decode("utf-8", "replace")
    started = '"child-pid"' in text
    match = re.search(r'"exit-code":\s*(\d+)', text)
    return started, int(match.group(1)) if match else None


def run(spec: SandboxSpec, *, cancel: threading.Event | None = None) -> SandboxResult:
    """Run the job to completion (or limit, timeout, cancel) and return what happened. Blocks.

    Must be called from a thread that stays alive until it returns: bwrap dies with its parent thread.
    Raises ValueError for an invalid spec and SandboxError if a required host tool is missing.
    """
    _validate(spec)
    missing = [t for t in _tools() if shutil.which(t) is None]
    if missing:
        raise SandboxError(f"missing host tools: {', '.join(missing)}")
    log_dir = Path(spec.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    Path(spec.output_dir).mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_dir / "stdout.log", log_dir / "stderr.log"
    as_root = os.geteuid() == 0
    if as_root:
        _grant(spec)
    ids = (spec.uid, spec.gid) if as_root else (os.getuid(), os.getgid())
    data_fds = {dest: _memfd(Path(dest).name, text) for dest, text in _etc_files(*ids).items()}
    status_r, status_w = os.pipe()
    stage = Path(tempfile.mkdtemp(prefix="sanctum-stage-")) if as_root else None
    started_at = datetime.now(UTC)
    try:
        argv = _launcher(spec, stage, status_w, data_fds)
        host_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=host_env,
            pass_fds=[status_w, *data_fds.values()],
            start_new_session=True,
        )
        os.close(status_w)
        status_w = -1
        assert proc.stdout is not None and proc.stderr is not None
        cap = spec.limits.log_mb * MIB
        pumps = [limits.LogPump(proc.stdout, stdout_path, cap), limits.LogPump(proc.stderr, stderr_path, cap)]
        for pump in pumps:
            pump.start()
        try:
            watch = limits.watch(proc, spec.limits, Path(spec.output_dir), cancel)
        finally:
            if proc.returncode is None:  # an exception in the loop: nothing may survive it
                limits.kill(proc, [])
            proc.wait()
        # Anything the job left behind (there should be nothing: the pid namespace is gone) dies now.
        limits.kill(None, watch.procs)
        limits.wait_dead(watch.procs, timeout=5)
        for pump in pumps:
            pump.join(timeout=5)
        started, exit_code = _read_status(status_r)
    finally:
        for fd in [status_r, status_w, *data_fds.values()]:
            if fd >= 0:
                os.close(fd)
        if stage is not None:  # empty on the host: the tmpfs over it lived in the job's mount namespace
            with contextlib.suppress(OSError):
                stage.rmdir()
    ended_at = datetime.now(UTC)
    if watch.stop_state is not None:
        state, reason = watch.stop_state, watch.stop_reason
    else:
        state, reason = limits.classify(
            exit_code if exit_code is not None else proc.returncode, started, _tail(stderr_path), spec.limits
        )
    output_bytes = dir_usage(Path(spec.output_dir))[0]
    if state in ("succeeded", "failed") and output_bytes > spec.limits.output_mb * MIB:
        # Written between two watchdog polls and then the job ended: still over the limit, still refused.
        state, reason = "output_exceeded", f"exceeded the output limit of {spec.limits.output_mb} MiB"
    return SandboxResult(
        state=state,
        reason=reason,
        exit_code=exit_code if started and watch.stop_state is None else None,
        started_at=started_at,
        ended_at=ended_at,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        peak_rss_bytes=watch.peak_rss,
        peak_tasks=watch.peak_tasks,
        output_bytes=output_bytes,
    )


def _tools() -> list[str]:
    tools = ["bwrap", "prlimit", "taskset"]
    if os.geteuid() == 0:
        tools += ["unshare", "sh", "mount", "setpriv"]
    return tools


@lru_cache(maxsize=1)
def available() -> str | None:
    """None if a job can run here, else why not (probes a real sandbox once per process)."""
    missing = [t for t in _tools() if shutil.which(t) is None]
    if missing:
        return f"missing host tools: {', '.join(missing)}"
    with tempfile.TemporaryDirectory(prefix="sanctum-probe-") as tmp:
        root = Path(tmp)
        (root / "code").mkdir()
        spec = SandboxSpec(
            command=["python", "-c", "import sys; print(sys.prefix)"],
            code_dir=root / "code",
            inputs={},
            output_dir=root / "output",
            limits=Limits(time_seconds=30, memory_mb=512),
            env={},
            log_dir=root / "logs",
        )
        try:
            result = run(spec)
        except (OSError, SandboxError) as exc:
            return f"bubblewrap sandbox cannot start: {exc}"
        if result.state != "succeeded":
            err = result.stderr_path.read_text(errors="replace").strip()
            return f"bubblewrap sandbox probe {result.state}: {result.reason}: {err[-500:]}"
    return None
