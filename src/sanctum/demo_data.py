"""Synthetic data for the demo project: a clinical table and a few files. Deterministic (seeded),
so every ``make demo`` shows the same rows; no real person is in it."""

from __future__ import annotations

import csv
import io
import random
from datetime import date, timedelta

from sqlalchemy.orm import Session

from sanctum.api.runtime import Runtime
from sanctum.datasets import catalog, transfer
from sanctum.projects.service import ProjectContext

SITES = ("north", "south", "east", "west")
DIAGNOSES = (
    "G47.33",
    "I10",
    "E11.9",
    "J45.909",
    "F32.9",
)  # sleep apnoea, hypertension, diabetes, asthma, depression


def clinical_visits_csv(rows: int = 240, seed: int = 2026) -> bytes:
    rng = random.Random(seed)  # noqa: S311 - synthetic data must be reproducible, not secret
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["patient", "age", "sex", "site", "diagnosis", "visit_date", "systolic_bp", "ahi"])
    start = date(2025, 1, 6)
    for i in range(rows):
        age = rng.randint(18, 89)
        writer.writerow(
            [
                f"P{i:05d}",
                age,
                rng.choice("FM"),
                rng.choice(SITES),
                rng.choice(DIAGNOSES),
                (start + timedelta(days=rng.randint(0, 540))).isoformat(),
                int(rng.gauss(118 + age * 0.3, 14)),
                round(max(0.0, rng.gauss(14, 9)), 1),
            ]
        )
    return out.getvalue().encode()


def sleep_files(seed: int = 7) -> dict[str, bytes]:
    rng = random.Random(seed)  # noqa: S311 - synthetic data must be reproducible, not secret
    files = {"README.txt": b"Synthetic overnight oximetry traces (1 Hz) for three demo subjects.\n"}
    for subject in ("sub-01", "sub-02", "sub-03"):
        spo2 = [f"{t},{min(100, max(80, round(rng.gauss(95, 1.8))))}" for t in range(3600)]
        files[f"{subject}/night-1/spo2.csv"] = ("t_s,spo2\n" + "\n".join(spo2) + "\n").encode()
    return files


def _version(
    session: Session,
    runtime: Runtime,
    ctx: ProjectContext,
    ref: catalog.DatasetRef,
    files: dict[str, bytes],
    table: bool,
) -> None:
    version = catalog.new_version(session, ctx, ref)
    key = runtime.keyring.dataset_key(session, ref.dataset)
    for path, body in files.items():
        if table:
            info, schema, rows = transfer.table_blob(
                runtime.store, body, path, key, max_bytes=runtime.settings.max_table_bytes
            )
            transfer.attach(
                session, ctx, ref, version.number, transfer.TABLE_FILE, info, table=(schema, rows)
            )
        else:
            info = transfer.store_blob(runtime.store, [body], key)
            transfer.attach(session, ctx, ref, version.number, path, info)
    catalog.commit(session, ctx, ref, version.number)


def load(session: Session, runtime: Runtime, ctx: ProjectContext) -> None:
    """Give the demo project a table to query and files to look at."""
    visits = catalog.create(
        session,
        ctx,
        runtime.keyring,
        name="clinical-visits",
        kind="table",
        description="Synthetic clinic visits: age, sex, site, ICD-10 code, blood pressure, AHI.",
    )
    _version(session, runtime, ctx, visits, {"clinical-visits.csv": clinical_visits_csv()}, table=True)
    sleep = catalog.create(
        session,
        ctx,
        runtime.keyring,
        name="sleep-oximetry",
        kind="files",
        description="Synthetic overnight SpO2 traces.",
    )
    _version(session, runtime, ctx, sleep, sleep_files(), table=False)
