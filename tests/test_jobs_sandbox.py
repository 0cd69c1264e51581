"""The bubblewrap sandbox that runs a researcher's job: each attack is stopped, reported, and leaves the
host as it was. These run real bwrap jobs (about 0.1 s each); nothing is mocked."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from conftest import missing
from sanctum.jobs.sandbox import Limits, SandboxResult, SandboxSpec, available, run

AS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module", autouse=True)
def _bwrap() -> None:
    reason = available()
    if reason is not None:
        missing(f"bubblewrap sandbox unavailable: {reason}")


@pytest.fixture
def job(tmp_path: Path) -> dict[str, Path]:
    """A staged job: code bundle, one input dataset, an empty output dir, a log dir."""
    code, data, output = tmp_path / "code", tmp_path / "data" / "cohort", tmp_path / "output"
    code.mkdir()
    data.mkdir(parents=True)
    output.mkdir()
    (data / "file.csv").write_text("age,weight\n30,70\n40,80\n50,90\n")
    return {"code": code, "data": data, "output": output, "logs": tmp_path / "logs", "root": tmp_path}


def run_script(
    job: dict[str, Path],
    script: str,
    *,
    env: dict[str, str] | None = None,
    cancel: threading.Event | None = None,
    **limits: int,
) -> SandboxResult:
    (job["code"] / "job.py").write_text(textwrap.dedent(script))
    spec = SandboxSpec(
        command=["python", "job.py"],
        code_dir=job["code"],
        inputs={"cohort": job["data"]},
        output_dir=job["output"],
        limits=Limits(**{"time_seconds": 30, "memory_mb": 1024, **limits}),
        env=env or {},
        log_dir=job["logs"],
    )
    return run(spec, cancel=cancel)


def stderr(result: SandboxResult) -> str:
    return result.stderr_path.read_text(errors="replace")


def stdout(result: SandboxResult) -> str:
    return result.stdout_path.read_text(errors="replace")


# --- the happy path -----------------------------------------------------------------------------------------


def test_job_reads_its_data_and_writes_its_output(job: dict[str, Path]) -> None:
    result = run_script(
        job,
        """
        import csv, json, os, sys
        import numpy as np
        with open("/data/cohort/file.csv") as f:
            rows = list(csv.DictReader(f))
        weights = np.array([float(r["weight"]) for r in rows])
        with open("/output/result.json", "w") as f:
            json.dump({"n": len(rows), "mean_weight": float(weights.mean()), "lr": os.environ["LR"]}, f)
        print("trained on", len(rows), "rows")
        print("a warning", file=sys.stderr)
        """,
        env={"LR": "0.1"},
    )
    assert (result.state, result.reason, result.exit_code) == ("succeeded", "exit code 0", 0), stderr(result)
    written = json.loads((job["output"] / "result.json").read_text())
    assert written == {"n": 3, "mean_weight": 80.0, "lr": "0.1"}
    assert stdout(result) == "trained on 3 rows\n"
    assert stderr(result) == "a warning\n"
    assert result.stdout_path.parent == job["logs"]
    assert result.started_at <= result.ended_at
    if AS_ROOT:  # the job ran as nobody on the host, not as the server's root
        assert (job["output"] / "result.json").stat().st_uid == 65534


def test_nonzero_exit_is_failed_with_the_exit_code(job: dict[str, Path]) -> None:
    result = run_script(job, "import sys; print('bad data', file=sys.stderr); sys.exit(3)")
    assert (result.state, result.reason, result.exit_code) == ("failed", "exit code 3", 3)
    assert "bad data" in stderr(result)


def test_unknown_command_is_failed_not_an_exception(job: dict[str, Path]) -> None:
    spec = SandboxSpec(["no-such-program"], job["code"], {}, job["output"], Limits(), {}, job["logs"])
    result = run(spec)
    assert result.state == "failed"
    assert "no-such-program" in stderr(result)


def test_job_gets_only_the_cpus_it_asked_for(job: dict[str, Path]) -> None:
    result = run_script(job, "import os; print(len(os.sched_getaffinity(0)))", cpus=1)
    assert result.state == "succeeded"
    assert stdout(result).strip() == "1"


# --- network ------------------------------------------------------------------------------------------------


def test_cannot_reach_postgres_on_the_host(job: dict[str, Path]) -> None:
    with socket.socket() as probe:
        host_reaches_pg = probe.connect_ex(("127.0.0.1", 5432)) == 0
    result = run_script(job, "import socket; socket.create_connection(('127.0.0.1', 5432), timeout=3)")
    assert result.state == "failed" and result.reason == "exit code 1"
    assert "ConnectionRefusedError" in stderr(result) or "Network is unreachable" in stderr(result)
    if host_reaches_pg:  # the refusal is the sandbox's doing, not an absent server
        with socket.create_connection(("127.0.0.1", 5432), timeout=3):
            pass


@pytest.mark.parametrize(
    "attack",
    [
        "import socket; socket.getaddrinfo('example.org', 443)",
        "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('8.8.8.8', 53))",
        "import socket; socket.create_connection(('1.1.1.1', 443), timeout=3)",
    ],
    ids=["dns-lookup", "udp-dns", "tcp-internet"],
)
def test_no_dns_and_no_outside_network(job: dict[str, Path], attack: str) -> None:
    result = run_script(job, attack)
    assert (result.state, result.reason) == ("failed", "exit code 1")
    assert any(e in stderr(result) for e in ("gaierror", "Network is unreachable", "OSError")), stderr(result)


# --- the filesystem -----------------------------------------------------------------------------------------


def test_host_secrets_and_other_projects_do_not_exist_inside(job: dict[str, Path]) -> None:
    secret = job["root"] / "keys" / "master.key"
    secret.parent.mkdir()
    secret.write_bytes(b"K" * 32)
    other_blobs = job["root"] / "blobs" / "project-other"
    other_blobs.mkdir(parents=True)
    (other_blobs / "0001.blob").write_bytes(b"someone else's data")
    paths = [str(secret), str(other_blobs), str(other_blobs / "0001.blob"), "/var/lib/postgresql", "/sys"]
    script = f"""
        import json, os, sys
        print(json.dumps({{p: os.path.exists(p) for p in {paths!r}}}))
        dirs = [d for d in ["/", "/root", "/work", "/etc"] if os.path.isdir(d)]
        print(json.dumps({{d: sorted(os.listdir(d)) for d in dirs}}))
        open({str(secret)!r}, "rb").read()
        """
    result = run_script(job, script)
    assert (result.state, result.reason) == ("failed", "exit code 1")
    assert "FileNotFoundError" in stderr(result)
    exists, listings = (json.loads(line) for line in stdout(result).splitlines())
    assert not any(exists.values()), exists
    python_tops = {Path(p).parts[1] for p in (sys.prefix, sys.base_prefix)}
    system = {"bin", "sbin", "lib", "lib64", "lib32", "usr"}
    mounts = {"code", "data", "dev", "etc", "output", "proc", "tmp"}
    assert set(listings["/"]) <= system | python_tops | mounts
    assert "shadow" not in listings["/etc"] and set(listings["/etc"]) <= {
        "passwd", "group", "nsswitch.conf", "hosts", "hostname", "ld.so.cache", "localtime",
    }  # fmt: skip
    # Only the Python prefix itself is there, not the rest of /root or of the repository.
    # (/root and /work exist inside only when the interpreter or the checkout lives below them)
    assert listings.get("/root", []) in ([], [".pyenv"])
    assert set(listings.get("/work", [])) <= {"main"}
    assert secret.read_bytes() == b"K" * 32


WRITE_TARGETS = {
    "code": "/code/evil.py",
    "data": "/data/cohort/file.csv",
    "usr": "/usr/evil",
    "root": "/evil",
    "venv": f"{sys.prefix}/evil",
    "python": f"{sys.base_prefix}/evil",
    "etc": "/etc/passwd",
    "dev": "/dev/evil",
}


@pytest.mark.parametrize("target", WRITE_TARGETS.values(), ids=WRITE_TARGETS.keys())
def test_writes_outside_output_and_tmp_are_refused(job: dict[str, Path], target: str) -> None:
    before = (job["data"] / "file.csv").read_bytes()
    result = run_script(job, f"open({target!r}, 'w').write('pwned')")
    assert (result.state, result.reason) == ("failed", "exit code 1")
    assert "Read-only file system" in stderr(result) or "Permission denied" in stderr(result), stderr(result)
    assert not (job["code"] / "evil.py").exists()
    assert (job["data"] / "file.csv").read_bytes() == before
    for host_path in ("/usr/evil", "/evil", f"{sys.prefix}/evil", f"{sys.base_prefix}/evil"):
        assert not Path(host_path).exists()


def test_tmp_is_private_and_size_capped(job: dict[str, Path]) -> None:
    marker = Path("/tmp") / f"sanctum-test-{uuid.uuid4().hex}"  # the host's /tmp
    script = f"""
        with open({str(marker)!r}, "wb") as f:
            for _ in range(64):
                f.write(b"x" * (1 << 20))
        """
    result = run_script(job, script, tmp_mb=8)
    assert result.state == "output_exceeded", stderr(result)
    assert "8 MiB" in result.reason
    assert not marker.exists()


# --- processes and the environment --------------------------------------------------------------------------


def test_host_environment_is_not_inherited(job: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANCTUM_SECRET", "hunter2")
    result = run_script(job, "import json, os; print(json.dumps(dict(os.environ)))", env={"SEED": "7"})
    assert result.state == "succeeded"
    env = json.loads(stdout(result))
    assert "SANCTUM_SECRET" not in env and "hunter2" not in stdout(result)
    assert env["SEED"] == "7" and env["HOME"] == "/tmp" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONDONTWRITEBYTECODE", "SEED", "PWD"} | {
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    }  # fmt: skip


def test_host_processes_are_not_visible(job: dict[str, Path]) -> None:
    script = """
        import os
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        cmds = [open(f"/proc/{p}/cmdline", "rb").read().replace(b"\\0", b" ").decode() for p in pids]
        print(len(pids)); print("\\n".join(cmds))
        """
    result = run_script(job, script)
    assert result.state == "succeeded"
    count, *cmds = stdout(result).splitlines()
    assert int(count) <= 3  # bwrap's init and the job
    assert not any("postgres" in c or "pytest" in c for c in cmds), cmds


def test_fork_bomb_is_stopped_and_reported(job: dict[str, Path]) -> None:
    marker = f"sanctum-bomb-{uuid.uuid4().hex}"
    script = f"""
        import os, subprocess, sys, time
        for _ in range(400):  # bounded, so a broken limit cannot take the test machine down
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", {marker!r}])
        """
    started = time.monotonic()
    result = run_script(job, script, processes=32)
    assert result.state == "process_limit", stderr(result)
    assert result.reason == "reached the process limit of 32"
    assert time.monotonic() - started < 20
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]
    subprocess.run(["true"], check=True)  # the host can still start processes


def test_daemonised_child_does_not_outlive_the_job(job: dict[str, Path]) -> None:
    marker = f"sanctum-daemon-{uuid.uuid4().hex}"
    script = f"""
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)", {marker!r}])
            os._exit(0)
        time.sleep(0.5)
        print("parent done")
        """
    result = run_script(job, script)
    assert result.state == "succeeded"
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]


# --- memory, time, output, cancel ---------------------------------------------------------------------------


def test_allocating_past_the_memory_limit(job: dict[str, Path]) -> None:
    result = run_script(job, "blob = b'x' * (512 << 20)", memory_mb=256)
    assert result.state == "memory_exceeded", stderr(result)
    assert result.reason == "exceeded the memory limit of 256 MiB"


def test_memory_limit_counts_all_processes_together(job: dict[str, Path]) -> None:
    script = """
        import os, time
        for _ in range(4):  # 4 x 100 MiB, each below the per-process limit
            if os.fork() == 0:
                blob = b"x" * (100 << 20)
                time.sleep(30)
                os._exit(0)
        time.sleep(30)
        """
    result = run_script(job, script, memory_mb=256)
    assert result.state == "memory_exceeded", stderr(result)
    assert result.reason == "exceeded the memory limit of 256 MiB"
    assert result.peak_rss_bytes > 256 << 20


def test_wall_clock_timeout(job: dict[str, Path]) -> None:
    limits = Limits(time_seconds=2)
    spec = SandboxSpec(["sleep", "100"], job["code"], {}, job["output"], limits, {}, job["logs"])
    started = time.monotonic()
    result = run(spec)
    elapsed = time.monotonic() - started
    assert (result.state, result.reason) == ("timed_out", "exceeded the time limit of 2 s")
    assert 1.9 <= elapsed < 4
    assert result.exit_code is None  # stopped: it has no exit status of its own


def test_one_big_output_file_is_stopped(job: dict[str, Path]) -> None:
    script = """
        with open("/output/big.bin", "wb") as f:
            for _ in range(64):
                f.write(b"x" * (1 << 20))
        """
    result = run_script(job, script, output_mb=8)
    assert result.state == "output_exceeded", stderr(result)
    assert "8 MiB" in result.reason
    assert (job["output"] / "big.bin").stat().st_size <= 8 << 20


def test_many_small_output_files_add_up(job: dict[str, Path]) -> None:
    script = """
        for i in range(24):
            with open(f"/output/part-{i}.bin", "wb") as f:
                f.write(b"x" * (1 << 20))
        """
    result = run_script(job, script, output_mb=8)
    assert (result.state, result.reason) == ("output_exceeded", "exceeded the output limit of 8 MiB")


def test_cancel(job: dict[str, Path]) -> None:
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    result = run_script(job, "import time; time.sleep(100)", cancel=cancel)
    assert (result.state, result.reason) == ("cancelled", "cancelled")
    assert time.monotonic() - started < 3


def test_logs_are_capped(job: dict[str, Path]) -> None:
    result = run_script(job, "import sys\nfor _ in range(5): sys.stdout.write('y' * (1 << 20))", log_mb=1)
    assert result.state == "succeeded"
    size = result.stdout_path.stat().st_size
    assert (1 << 20) <= size < (1 << 20) + 200
    assert stdout(result).endswith("[sanctum: log truncated at 1 MiB]\n")


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"command": []}, "command"),
        ({"command": ["python", "a\0b"]}, "command"),
        ({"env": {"BAD-NAME": "1"}}, "environment variable name"),
        ({"env": {"X": "a\0b"}}, "without NUL"),
        ({"inputs": {"../etc": Path("/tmp")}}, "invalid input name"),
        ({"inputs": {"cohort": Path("/nonexistent")}}, "not a directory"),
        ({"code_dir": Path("/nonexistent")}, "code_dir"),
        ({"uid": 0}, "never root"),
    ],
)
def test_invalid_specs_are_refused_before_anything_runs(
    job: dict[str, Path], change: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {
        "command": ["true"],
        "code_dir": job["code"],
        "inputs": {},
        "output_dir": job["output"],
        "limits": Limits(),
        "env": {},
        "log_dir": job["logs"],
        **change,
    }
    with pytest.raises(ValueError, match=message):
        run(SandboxSpec(**fields))  # type: ignore[arg-type]
    assert not job["logs"].exists()


@pytest.mark.parametrize("bad", [{"memory_mb": 0}, {"cpus": -1}, {"time_seconds": 1.5}, {"processes": 2}])
def test_invalid_limits_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="limit"):
        Limits(**bad)  # type: ignore[arg-type]
