"""Shared set-up for the job tests: a project with data, a registered key, code folders."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sanctum.sdk import Client
from sanctum.sdk.jobs import public_key_text
from sanctum.security import signing

VITALS = "patient,hr\nP1,60\nP2,72\nP3,90\n"

SUMMARY_JOB = textwrap.dedent(
    """
    import csv, json, os, sys
    rows = list(csv.DictReader(open("/data/vitals/vitals.csv")))
    mean = sum(int(r["hr"]) for r in rows) / len(rows)
    os.makedirs("/output/tables", exist_ok=True)
    json.dump({"n": len(rows), "mean_hr": mean, "scale": os.environ.get("SANCTUM_PARAM_SCALE")},
              open("/output/summary.json", "w"))
    open("/output/tables/count.txt", "w").write(str(len(rows)))
    print("done with", len(rows), "rows")
    print("a warning", file=sys.stderr)
    """
)


@dataclass
class JobWorld:
    sdk: dict[str, Client]
    keys: dict[str, Ed25519PrivateKey]
    code: Path


def write_code(folder: Path, script: str = SUMMARY_JOB, name: str = "job.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(script)
    return folder


def make_job_world(client, world, people, tmp_path: Path) -> JobWorld:
    sdk = {
        name: Client("http://testserver", people.token(getattr(world, name)), http=client)
        for name in ("owner", "scientist", "checker", "auditor", "outsider", "other_owner")
    }
    keys = {}
    for name in ("owner", "scientist", "checker", "other_owner"):
        key = signing.new_private_key()
        sdk[name].register_key(public_key_text(key), name=f"{name} laptop")
        keys[name] = key
    owner = sdk["owner"]
    owner.create_dataset("alpha", "vitals")
    version = owner.create_version("alpha", "vitals").number
    owner.upload_file("alpha", "vitals", version, "vitals.csv", VITALS.encode())
    owner.commit_version("alpha", "vitals", version)
    return JobWorld(sdk, keys, write_code(tmp_path / "code"))
