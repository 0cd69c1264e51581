"""The Slurm executor beside a bare ``sbatch`` of a no-op script on the same private Slurm.

    sudo .venv/bin/python bench/jobs_slurm.py [--runs 5]

Starts the tests' private single-node Slurm (munged, slurmctld, slurmd in a temp dir; needs root
and Debian's slurm-wlm and munge), a real Sanctum server on loopback, and a registered node.
Prints the median time from submit to end of:
- a no-op Sanctum job on Slurm: sign, submit, the server's sbatch, the Prolog verifying the signed
  manifest on the node, ``sanctum node run`` (verify, sealed keys, bubblewrap), the report;
- ``sbatch --export=NONE`` of a no-op script (pass-through Prolog) on the same cluster, its end
  seen by asking the controller every 50 ms;
and their ratio. The server's dispatcher is driven every 50 ms (it polls every second in service).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from sanctum.accounts.users import create_user  # noqa: E402
from sanctum.api.app import create_app  # noqa: E402
from sanctum.api.runtime import Runtime  # noqa: E402
from sanctum.audit import AuditContext  # noqa: E402
from sanctum.config import Settings  # noqa: E402
from sanctum.db.migrate import upgrade  # noqa: E402
from sanctum.jobs import slurm  # noqa: E402
from sanctum.jobs.node_agent import keygen  # noqa: E402
from sanctum.jobs.slurm_dispatch import SlurmDispatcher  # noqa: E402
from sanctum.jobs.slurm_install import prolog_script  # noqa: E402
from sanctum.sdk import Client  # noqa: E402
from sanctum.sdk.jobs import public_key_text  # noqa: E402
from sanctum.security import signing  # noqa: E402
from sanctum.security.keys import create_master_key  # noqa: E402
from sanctum.server import in_thread  # noqa: E402
from slurm_cluster import PASS_PROLOG, running_cluster, unavailable  # noqa: E402 - the tests' Slurm

PASSWORD = "correct horse battery staple"
SANCTUM_BIN = Path(sys.executable).with_name("sanctum")


def _people(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        create_user(db, AuditContext(), "admin@example.org", PASSWORD, admin=True)
        create_user(db, AuditContext(), "bench@example.org", PASSWORD)


def sanctum_runs(runtime: Runtime, url: str, cluster, work: Path, runs: int) -> list[float]:
    node_dir = work / "node"
    public = keygen(
        node_dir,
        name=cluster.node,
        server_url=url,
        blob_root=runtime.settings.data_dir / "blobs",
        spool=runtime.settings.slurm_spool_dir,
        staging=work / "staging",
    )
    admin, _ = Client.login(url, "admin@example.org", PASSWORD)
    admin._call(
        "POST", "/admin/nodes", dict, json={**public, "addresses": ["127.0.0.1"], "location": "bench"}
    )
    cluster.set_prolog(prolog_script(SANCTUM_BIN, url, extra_args=["--dir", str(node_dir)]))
    client, _ = Client.login(url, "bench@example.org", PASSWORD)
    client.create_project("bench")
    key = signing.new_private_key()
    client.register_key(public_key_text(key))
    code = work / "code"
    code.mkdir()
    (code / "noop.py").write_text("pass\n")
    dispatcher = SlurmDispatcher(runtime)
    times = []
    for index in range(runs + 1):
        started = time.perf_counter()
        job = client.submit_job("bench", code, key=key, entrypoint="python noop.py", executor="slurm")
        while (state := client.get_job("bench", job.id).state) in ("queued", "running"):
            dispatcher.tick()
            time.sleep(0.05)
        if state != "succeeded":
            raise SystemExit(f"job {job.id} ended {state}: {client.get_job('bench', job.id).reason}")
        if index:  # the first run warms caches
            times.append(time.perf_counter() - started)
    cluster.set_prolog(PASS_PROLOG)
    return times


def bare_runs(cluster, runs: int) -> list[float]:
    """sbatch, then ask the controller every 50 ms, as the Sanctum side is asked (``sbatch --wait``
    itself polls with back-off, several seconds at a time: it would flatter Sanctum)."""
    times = []
    for index in range(runs + 1):
        started = time.perf_counter()
        out = cluster.run("sbatch", "--parsable", "--export=NONE", "--wrap", "true", "-o", "/dev/null")
        slurm_id = out.stdout.strip().split(";")[0]
        while not slurm.job(cluster.settings, slurm_id).finished:
            time.sleep(0.05)
        if index:
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    with running_cluster() as cluster, tempfile.TemporaryDirectory(prefix="sanctum-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        settings = Settings(
            data_dir=work / "data",
            require_2fa="off",
            job_runner=False,
            slurm_partition=cluster.partition,
            slurm_conf=cluster.conf,
            slurm_spool_dir=work / "spool",
        )
        settings.data_dir.mkdir()
        settings.slurm_spool_dir.mkdir()
        create_master_key(settings.resolved_master_key_file)
        upgrade(settings.resolved_database_url)
        runtime = Runtime.start(settings)
        _people(runtime)
        with in_thread(create_app(runtime=runtime)) as url:
            settings.public_url = url
            settings.slurm_node_dir = work / "node"
            bare = statistics.median(bare_runs(cluster, args.runs))
            ours = statistics.median(sanctum_runs(runtime, url, cluster, work, args.runs))
        print(
            f"no-op job on Slurm, submit → end: Sanctum {ours * 1000:.0f} ms; bare sbatch "
            f"{bare * 1000:.0f} ms; ratio ×{ours / bare:.2f} (+{(ours - bare) * 1000:.0f} ms for signing, "
            "Prolog verification, sealed keys, sandbox and the report)"
        )


if __name__ == "__main__":
    main()
