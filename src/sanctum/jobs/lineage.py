"""Lineage of an output version: which signed job, code and inputs produced it — and as RO-Crate.

Why export a Workflow Run RO-Crate: provenance that only Sanctum can read is not evidence. RO-Crate
(JSON-LD with schema.org terms) is what journals, repositories and other platforms read; the
Workflow Run profile names the run (CreateAction), the code (instrument), the inputs (object),
the outputs (result) and the person (agent), so a reviewer outside can follow a result back to
the signed manifest and the exact input versions, by hash, without seeing any data.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.datasets import catalog
from sanctum.db.models import User
from sanctum.errors import NotFound
from sanctum.jobs.models import Job, SigningKey
from sanctum.jobs.service import inputs_of
from sanctum.projects.service import ProjectContext
from sanctum.security import signing

PROCESS_PROFILE = "https://w3id.org/ro/wfrun/process/0.5"
WORKFLOW_PROFILE = "https://w3id.org/ro/wfrun/workflow/0.5"
CRATE_CONTEXT = "https://w3id.org/ro/crate/1.1/context"


def lineage_for(session: Session, ctx: ProjectContext, address: str, number: int) -> dict[str, Any]:
    ref = catalog.resolve(session, ctx, address)
    version = catalog.version(session, ref, number)
    job = session.scalar(select(Job).where(Job.output_version_id == version.id))
    if job is None:
        raise NotFound("this version was not produced by a job (it was imported)", code="no_lineage")
    manifest = json.loads(job.manifest)
    key = session.get(SigningKey, job.signing_key_id) if job.signing_key_id else None
    signer = session.get(User, key.user_id) if key else None
    files = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in catalog.files(session, version)]
    return {
        "dataset": ref.address,
        "version": version.number,
        "version_manifest_sha256": version.manifest_sha256,
        "job": job.number,
        "project": ctx.project.name,
        "manifest_sha256": job.manifest_sha256,
        "code_sha256": job.bundle_sha256,
        "entrypoint": manifest["entrypoint"],
        "parameters": manifest.get("parameters", {}),
        "inputs": [
            {"dataset": i.address, "version": i.version_number, "manifest_sha256": i.version_manifest_sha256}
            for i in inputs_of(session, job)
        ],
        "signer": signer.email if signer else "(deleted user)",
        "signer_key": job.signer_fingerprint,
        "signature": job.signature,
        "signature_valid": bool(
            key
            and signing.verify(key.public_key, job.manifest.encode(), signing.decode_signature(job.signature))
        ),
        "executor": job.executor,
        "dmp_version": job.dmp_version,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "files": files,
    }


def ro_crate(lineage: dict[str, Any], *, base_url: str = "") -> dict[str, Any]:
    """The ``ro-crate-metadata.json`` of a Workflow Run Crate for one output version."""
    project = lineage["project"]
    run_id = f"#job-{lineage['job']}"
    code_id = f"#code-{lineage['code_sha256'][:16]}"
    person_id = f"#signer-{lineage['signer_key']}"
    inputs = [
        {
            "@id": f"#input-{i['dataset']}-{i['version']}",
            "@type": "Dataset",
            "name": f"{i['dataset']} version {i['version']}",
            "identifier": f"sanctum:{project}/{i['dataset']}@{i['version']}",
            "sha256": i["manifest_sha256"],
        }
        for i in lineage["inputs"]
    ]
    outputs = [
        {
            "@id": f"output/{f['path']}",
            "@type": "File",
            "name": f["path"],
            "contentSize": f["size"],
            "sha256": f["sha256"],
        }
        for f in lineage["files"]
    ]
    times = {
        k: v.isoformat() if hasattr(v, "isoformat") else v
        for k, v in (("startTime", lineage["started_at"]), ("endTime", lineage["ended_at"]))
        if v is not None
    }
    graph: list[dict[str, Any]] = [
        {
            "@id": "ro-crate-metadata.json",
            "@type": "CreativeWork",
            "conformsTo": [{"@id": "https://w3id.org/ro/crate/1.1"}, {"@id": WORKFLOW_PROFILE}],
            "about": {"@id": "./"},
        },
        {
            "@id": "./",
            "@type": "Dataset",
            "name": f"{lineage['dataset']} version {lineage['version']} (Sanctum project {project})",
            "description": "Outputs of a signed Sanctum job, with the job's provenance.",
            "identifier": f"sanctum:{project}/{lineage['dataset']}@{lineage['version']}",
            "conformsTo": [{"@id": PROCESS_PROFILE}, {"@id": WORKFLOW_PROFILE}],
            "mainEntity": {"@id": code_id},
            "hasPart": [{"@id": code_id}, *[{"@id": o["@id"]} for o in outputs]],
            "mentions": [{"@id": run_id}],
        },
        {
            "@id": code_id,
            "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow"],
            "name": "code bundle",
            "encodingFormat": "application/gzip",
            "sha256": lineage["code_sha256"],
            "programmingLanguage": {"@id": "#python"},
            "description": "entry point: " + " ".join(lineage["entrypoint"]),
        },
        {"@id": "#python", "@type": "ComputerLanguage", "name": "Python"},
        {
            "@id": run_id,
            "@type": "CreateAction",
            "name": f"Sanctum job {lineage['job']}",
            "instrument": {"@id": code_id},
            "object": [{"@id": i["@id"]} for i in inputs],
            "result": [{"@id": o["@id"]} for o in outputs],
            "agent": {"@id": person_id},
            "actionStatus": {"@id": "http://schema.org/CompletedActionStatus"},
            "identifier": lineage["manifest_sha256"],
            "description": (
                f"signed manifest sha256 {lineage['manifest_sha256']}, executor {lineage['executor']}"
            ),
            **times,
        },
        {
            "@id": person_id,
            "@type": "Person",
            "name": lineage["signer"],
            "identifier": lineage["signer_key"],
        },
        *inputs,
        *outputs,
    ]
    return {"@context": CRATE_CONTEXT, "@graph": graph}
