"""The demo's first job: synthetic sleep recordings in, the sleep-staging example run on them.

Why through the SDK and not the service layer: the demo should show exactly what a researcher
does (an owner uploads, a scientist signs and submits), so every check a real job meets applies.
The example code and its synthetic-data generator live in ``examples/sleep-staging`` of the
source tree (they are what a researcher would copy); writing EDF needs ``pyedflib``.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from types import ModuleType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sanctum.sdk import Client

DEMO_DATASET = "sleep-recordings"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sleep-staging"


def _generator(code: Path) -> ModuleType:
    """The example's ``make_synthetic`` module, loaded from its file (examples are not a package)."""
    spec = importlib.util.spec_from_file_location(
        "sanctum_example_make_synthetic", code / "make_synthetic.py"
    )
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{code / 'make_synthetic.py'} is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ensure_recordings(owner: Client, project: str, code: Path = EXAMPLE, *, n: int = 4) -> int:
    """Upload synthetic recordings as ``sleep-recordings`` unless a committed version exists;
    return that version's number. Idempotent, so ``sanctum demo`` can run it on every start."""
    if DEMO_DATASET in {d.name for d in owner.list_datasets(project)}:
        committed = owner.list_versions(project, DEMO_DATASET)
        if committed:
            return max(v.number for v in committed)
    else:
        owner.create_dataset(project, DEMO_DATASET, description="Synthetic EDF+ sleep recordings (demo)")
    version = owner.create_version(project, DEMO_DATASET).number
    with tempfile.TemporaryDirectory(prefix="sanctum-demo-sleep-") as tmp:
        for path in _generator(code).write_recordings(Path(tmp), n=n):
            owner.upload_file(project, DEMO_DATASET, version, path.name, path)
    owner.commit_version(project, DEMO_DATASET, version)
    return version


def run_demo_job(
    owner: Client,
    scientist: Client,
    project: str,
    key: Ed25519PrivateKey,
    *,
    code: Path = EXAMPLE,
) -> int:
    """Make sure the demo recordings exist, then submit the sleep-staging example signed with the
    scientist's ``key`` (whose public half must be registered); return the job's number."""
    ensure_recordings(owner, project, code)
    job = scientist.submit_job(
        project,
        code,
        key=key,
        entrypoint="python train.py",
        inputs=[DEMO_DATASET],
        parameters={"dataset": DEMO_DATASET},
    )
    return job.id
