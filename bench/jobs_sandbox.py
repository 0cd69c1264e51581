"""Job sandbox benchmark: what starting a job in bubblewrap costs over running the same command directly.

For each command (``true``, ``python -c pass``) it alternates, ``--runs`` times (default 20): the command
run directly with ``subprocess.run`` (fork + exec, the floor), and the same command through
``sanctum.jobs.sandbox.run`` (validation, the launch chain unshare -> sh -> setpriv -> prlimit -> taskset ->
bwrap, namespaces and mounts, the watchdog, log capture, teardown). It prints the median wall time of each in
milliseconds, the difference (the sandbox's overhead; target < 100 ms) and the ratio.

    .venv/bin/python bench/jobs_sandbox.py [--runs 20]

Exit status 0 when measured (target met or not), 1 when the sandbox is not available here.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from sanctum.jobs.sandbox import Limits, SandboxSpec, available, run

TARGET_MS = 100.0
COMMANDS = {"true": ["true"], "python -c pass": ["python", "-c", "pass"]}


def direct(argv: list[str]) -> float:
    command = [sys.executable, *argv[1:]] if argv[0] == "python" else argv
    started = time.perf_counter()
    subprocess.run(command, check=True, env={"PATH": "/usr/bin:/bin"})
    return time.perf_counter() - started


def sandboxed(argv: list[str], root: Path) -> float:
    spec = SandboxSpec(
        command=argv,
        code_dir=root / "code",
        inputs={},
        output_dir=root / "output",
        limits=Limits(time_seconds=60, memory_mb=1024),
        env={},
        log_dir=root / "logs",
    )
    started = time.perf_counter()
    result = run(spec)
    elapsed = time.perf_counter() - started
    if result.state != "succeeded":
        raise SystemExit(f"sandboxed {argv} {result.state}: {result.reason}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    reason = available()
    if reason is not None:
        print(f"sandbox not available: {reason}", file=sys.stderr)
        return 1
    print(f"median of {args.runs} runs, alternating direct / sandboxed")
    print(f"{'command':<16} {'direct ms':>10} {'sandbox ms':>11} {'overhead ms':>12} {'ratio':>7}")
    missed = False
    with tempfile.TemporaryDirectory(prefix="sanctum-bench-") as tmp:
        root = Path(tmp)
        (root / "code").mkdir()
        for name, argv in COMMANDS.items():
            direct(argv)  # warm-up: page cache, imports
            sandboxed(argv, root)
            plain, boxed = [], []
            for _ in range(args.runs):
                plain.append(direct(argv))
                boxed.append(sandboxed(argv, root))
            d, s = statistics.median(plain) * 1000, statistics.median(boxed) * 1000
            missed = missed or s - d >= TARGET_MS
            print(f"{name:<16} {d:>10.1f} {s:>11.1f} {s - d:>12.1f} {s / d:>7.1f}")
    print(f"target: sandbox start adds < {TARGET_MS:.0f} ms" + (" (MISSED)" if missed else " (met)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
