"""Synthetic data for the demo project: a clinical table. Deterministic (seeded), so every
``make demo`` shows the same rows; no real person is in it. It enters the project through the
ingest pipeline like real data (``sanctum.demo_ingest``), never as a raw upload."""

from __future__ import annotations

import csv
import io
import random
from datetime import date, timedelta

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
