"""The SecureHPC workflow on a real single-node Slurm: Prolog verification, sealed keys, node runs.

The server submits with ``sbatch --export=NONE``; the Prolog written by ``sanctum slurm install``
runs ``sanctum node verify-prolog`` on the node; ``sanctum node run`` receives the keys sealed to
the node and runs the job in the same bubblewrap sandbox. Everything here is real: slurmctld,
slurmd, munge, bwrap, the HTTP server and the CLI.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from nacl.public import PrivateKey

from conftest import missing
from jobs_helpers import make_job_world, write_code
from sanctum.db.models import Project
from sanctum.jobs import nodes
from sanctum.jobs.models import Job
from sanctum.jobs.node_agent import keygen
from sanctum.jobs.node_protocol import auth_header
from sanctum.jobs.slurm_dispatch import SlurmDispatcher
from sanctum.jobs.slurm_install import prolog_script
from sanctum.security import signing

SANCTUM_BIN = Path(sys.executable).with_name("sanctum")


@pytest.fixture
def hpc(slurm_cluster, runtime, live_server, tmp_path_factory):
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap) is not installed")
    base = Path(slurm_cluster.root) / f"hpc-{time.monotonic_ns()}"
    spool, node_dir, staging = base / "spool", base / "node", base / "staging"
    spool.mkdir(parents=True)
    settings = runtime.settings
    settings.slurm_partition = slurm_cluster.partition
    settings.slurm_conf = slurm_cluster.conf
    settings.slurm_spool_dir = spool
    settings.slurm_node_dir = node_dir
    settings.public_url = live_server.url
    settings.job_runner = False  # the test drives the dispatcher itself
    public = keygen(
        node_dir,
        name=slurm_cluster.node,
        server_url=live_server.url,
        blob_root=settings.data_dir / "blobs",
        spool=spool,
        staging=staging,
    )
    slurm_cluster.set_prolog(prolog_script(SANCTUM_BIN, live_server.url, extra_args=["--dir", str(node_dir)]))
    yield {"public": public, "node_dir": node_dir, "spool": spool, "staging": staging, "url": live_server.url}
    slurm_cluster.reset()


@pytest.fixture
def hw(hpc, client, world, people, tmp_path):
    jw = make_job_world(client, world, people, tmp_path)
    admin = client.post(
        "/api/v1/admin/nodes",
        json={
            "name": hpc["public"]["name"],
            "public_key": hpc["public"]["public_key"],
            "sealing_key": hpc["public"]["sealing_key"],
            "addresses": ["127.0.0.1"],
            "location": "site-a",
        },
        headers=world.h["admin"],
    )
    assert admin.status_code == 201, admin.text
    return jw


def _drive(dispatcher: SlurmDispatcher, sdk, number: int, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dispatcher.tick()
        job = sdk.get_job("alpha", number)
        if job.state not in ("queued", "running"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {number} did not end: {sdk.get_job('alpha', number)}")


def test_a_signed_job_runs_on_slurm_end_to_end(hw, runtime, slurm_cluster):
    job = hw.sdk["scientist"].submit_job(
        "alpha",
        hw.code,
        key=hw.keys["scientist"],
        entrypoint="python job.py",
        inputs=["vitals"],
        executor="slurm",
    )
    dispatcher = SlurmDispatcher(runtime)
    ended = _drive(dispatcher, hw.sdk["scientist"], job.id)
    assert ended.state == "succeeded", (ended.reason, slurm_cluster.logs())
    assert ended.output is not None and ended.output.version == 1
    assert {f.path for f in hw.sdk["owner"].list_files("alpha", "job-outputs", 1)} == {
        "summary.json",
        "tables/count.txt",
    }
    assert "done with 3 rows" in hw.sdk["checker"].job_logs("alpha", job.id).stdout
    assert hw.sdk["auditor"].lineage("alpha", "job-outputs", 1).executor == "slurm"


VIEW_JOB = """
import json
import pyarrow.parquet as pq
table = pq.read_table("/data/visits/visits.parquet")
json.dump({"columns": table.column_names, "admitted": [str(v) for v in table.column("admitted").to_pylist()]},
          open("/output/seen.json", "w"))
"""


def test_a_slurm_job_stages_the_signers_view_of_a_table(hw, client, world, runtime, slurm_cluster, tmp_path):
    """A Scientist's job on a node reads the Scientist's view (MRN dropped, dates as years), not the
    stored table: the same rows and columns as the local executor and SQL give them."""
    from ingest_helpers import CSV_TEXT, POLICY, tar_body

    policy = {**POLICY, "views": {"data_scientist": {"admitted": {"action": "generalise", "date": "year"},
                                                     "mrn": {"action": "drop"}}}}  # fmt: skip
    h, base = world.h["owner"], "/api/v1/projects/alpha/ingests"
    number = client.post(base, json={"dataset": "visits", "kind": "table", "policy": policy}, headers=h)
    number = number.json()["id"]
    sent = client.post(f"{base}/{number}/batches", content=tar_body({"v.csv": CSV_TEXT.encode()}), headers=h)
    assert sent.status_code == 200, sent.text
    assert client.post(f"{base}/{number}/finish", headers=h).json()["version"] == 1
    code = write_code(tmp_path / "view-code", VIEW_JOB)
    job = hw.sdk["scientist"].submit_job(
        "alpha", code, key=hw.keys["scientist"], entrypoint="python job.py", inputs=["visits"],
        executor="slurm",
    )  # fmt: skip
    ended = _drive(SlurmDispatcher(runtime), hw.sdk["scientist"], job.id)
    assert ended.state == "succeeded", (ended.reason, hw.sdk["scientist"].job_logs("alpha", job.id).stderr)
    out = tmp_path / "seen.json"
    hw.sdk["owner"].download_file("alpha", ended.output.dataset, ended.output.version, "seen.json", out)
    seen = json.loads(out.read_text())
    assert "mrn" not in seen["columns"] and "admitted" in seen["columns"]
    assert seen["admitted"] and all(len(v) == 4 for v in seen["admitted"]), seen  # years, not dates
    # The plan a node receives names the view; an Owner's job would get the stored table.
    with runtime.db.session(write=False) as db:
        row = db.scalar(sa.select(Job).join(Project).where(Project.name == "alpha", Job.number == job.id))
        view = nodes.plan(db, row)["inputs"][0]["view"]
    assert view["role"] == "data_scientist" and "mrn" in view["policy"]["views"]["data_scientist"]


def test_code_altered_after_signing_is_refused_by_the_prolog(hw, hpc, runtime, slurm_cluster):
    job = hw.sdk["scientist"].submit_job(
        "alpha",
        hw.code,
        key=hw.keys["scientist"],
        entrypoint="python job.py",
        inputs=["vitals"],
        executor="slurm",
    )
    # Someone with write access to the shared spool swaps the code after it was signed and queued.
    tamper = f"printf 'evil' >> {hpc['spool']}/job-{job.id}/bundle.tar.gz\n"
    real = prolog_script(SANCTUM_BIN, hpc["url"], extra_args=["--dir", str(hpc["node_dir"])])
    slurm_cluster.set_prolog(real.replace("PATH=", tamper + "PATH=", 1))
    ended = _drive(SlurmDispatcher(runtime), hw.sdk["scientist"], job.id)
    assert ended.state == "rejected" and "Prolog refused" in ended.reason
    assert ended.output is None
    assert slurm_cluster.node_state()[0] in ("drained", "draining", "drained*")


def _signed_post(url: str, name: str, key, path: str) -> httpx.Response:
    return httpx.post(
        url + path,
        content=b"{}",
        headers={
            "Authorization": auth_header(name, key, "POST", path, b"{}"),
            "Content-Type": "application/json",
        },
    )


def test_an_unregistered_node_gets_no_key(hw, hpc, slurm_cluster):
    stranger = signing.new_private_key()
    response = _signed_post(hpc["url"], "stranger", stranger, "/api/v1/node/jobs/1/keys")
    assert response.status_code == 403 and response.json()["error"]["code"] == "unregistered_node"
    # The registered name with the wrong key is refused too.
    response = _signed_post(hpc["url"], slurm_cluster.node, stranger, "/api/v1/node/jobs/1/keys")
    assert response.status_code == 403 and response.json()["error"]["code"] == "node_signature"


def test_keys_are_issued_once_and_only_while_scheduled_on_the_node(hw, hpc, runtime, slurm_cluster):
    job = hw.sdk["scientist"].submit_job(
        "alpha",
        hw.code,
        key=hw.keys["scientist"],
        entrypoint="python job.py",
        inputs=["vitals"],
        executor="slurm",
    )
    ended = _drive(SlurmDispatcher(runtime), hw.sdk["scientist"], job.id)
    assert ended.state == "succeeded", ended.reason
    node_key = signing.load_private_key((hpc["node_dir"] / "node-signing.pem").read_bytes())
    with runtime.db.session(write=False) as db:
        from sanctum.jobs.models import Job

        job_id = db.query(Job.id).filter(Job.number == job.id).scalar()
    replay = _signed_post(hpc["url"], slurm_cluster.node, node_key, f"/api/v1/node/jobs/{job_id}/keys")
    assert replay.status_code in (403, 409)
    # The grant itself is once-only, whatever the job's state.
    with runtime.db.session() as db:
        from sanctum.errors import Conflict
        from sanctum.jobs.models import Job, Node

        found = db.get(Job, job_id)
        node = db.query(Node).one()
        with pytest.raises(Conflict):
            nodes.grant_keys(db, runtime.keyring, node, found)


def test_sealed_keys_open_only_with_the_nodes_private_key():
    from nacl.exceptions import CryptoError
    from nacl.public import PublicKey, SealedBox

    node, other = PrivateKey.generate(), PrivateKey.generate()
    sealed = SealedBox(PublicKey(bytes(node.public_key))).encrypt(json.dumps({"k": "v"}).encode())
    assert json.loads(SealedBox(node).decrypt(sealed)) == {"k": "v"}
    with pytest.raises(CryptoError):
        SealedBox(other).decrypt(sealed)
    assert base64.b64encode(sealed)


SLOW_JOB = (
    "import time\n"
    "open('/output/partial.txt', 'w').write('half of a result')\n"
    "print('started', flush=True)\n"
    "time.sleep(300)\n"
)


def _start_slow_job(hw, hpc, runtime, tmp_path):
    """Submit a job that writes part of its output and then runs on; return it once it does."""
    code = write_code(tmp_path / "slow", SLOW_JOB)
    job = hw.sdk["scientist"].submit_job(
        "alpha",
        code,
        key=hw.keys["scientist"],
        entrypoint="python job.py",
        inputs=["vitals"],
        executor="slurm",
    )
    dispatcher = SlurmDispatcher(runtime)
    with runtime.db.session(write=False) as db:
        from sanctum.jobs.models import Job

        job_id = db.query(Job.id).filter(Job.number == job.id).scalar()
    staged = hpc["staging"] / f"job-{job_id}"
    deadline = time.monotonic() + 90
    while not (staged / "output" / "partial.txt").exists():
        assert time.monotonic() < deadline, hw.sdk["scientist"].get_job("alpha", job.id)
        dispatcher.tick()
        time.sleep(0.3)
    assert (staged / "data" / "vitals").is_dir()  # decrypted inputs are on the node now
    return job, job_id, staged, dispatcher


def _kill_tree(job_id: int) -> None:
    """Power loss, as far as the job is concerned: SIGKILL, so no ``finally`` anywhere runs."""
    import psutil

    agents = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"]
        and "node" in p.info["cmdline"]
        and "run" in p.info["cmdline"]
        and str(job_id) in p.info["cmdline"]
    ]
    assert agents, "the node agent is not running"
    victims = [q for a in agents for q in [a, *a.children(recursive=True)]]
    for victim in victims:
        with contextlib.suppress(psutil.Error):
            victim.kill()
    psutil.wait_procs(victims, timeout=10)


def test_a_node_that_dies_mid_job_ends_it_failed_without_output_and_its_staging_is_wiped(
    hw, hpc, runtime, slurm_cluster, tmp_path
):
    job, job_id, staged, dispatcher = _start_slow_job(hw, hpc, runtime, tmp_path)
    _kill_tree(job_id)
    slurm_cluster.run(
        "scontrol", "update", f"nodename={slurm_cluster.node}", "state=down", "reason=power-loss"
    )
    ended = _drive(dispatcher, hw.sdk["scientist"], job.id)
    assert ended.state == "failed" and "did the node die" in ended.reason, ended.reason
    assert ended.output is None
    assert hw.sdk["owner"].list_versions("alpha", "job-outputs", drafts=True) == []  # no partial version
    # The dead node kept its plaintext; the next start of the node agent (or `sanctum node wipe`
    # at boot) removes it.
    assert staged.exists()
    slurm_cluster.resume_node()
    wiped = subprocess.run(
        [str(SANCTUM_BIN), "node", "wipe", "--dir", str(hpc["node_dir"]), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(wiped.stdout) == {"wiped": [staged.name]}
    assert not staged.exists()


def test_a_job_cancelled_while_running_on_slurm_wipes_its_staging_on_the_node(
    hw, hpc, runtime, slurm_cluster, tmp_path
):
    job, _, staged, dispatcher = _start_slow_job(hw, hpc, runtime, tmp_path)
    hw.sdk["scientist"].cancel_job("alpha", job.id)
    ended = _drive(dispatcher, hw.sdk["scientist"], job.id)
    assert ended.state == "cancelled" and ended.output is None
    deadline = time.monotonic() + 60  # scancel sends SIGTERM: the agent unwinds, kills the sandbox, wipes
    while staged.exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not staged.exists(), slurm_cluster.logs()
