"""Deterministic synthetic EDF+ sleep recordings, so the example can be tried without real data.

Each recording has one EEG channel at 100 Hz whose dominant rhythm follows a synthetic hypnogram
(wake: beta, N1: alpha, N2: theta, N3: delta, REM: theta + beta), and one EDF+ annotation per
30-s epoch ("Sleep stage W/1/2/3/R"), as in the Sleep-EDF corpus. No real person is in it.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pyedflib

FS = 100
EPOCH_S = 30
STAGES = ("W", "1", "2", "3", "R")
#: Dominant frequencies (Hz) of each stage's synthetic EEG.
RHYTHMS: dict[str, tuple[float, ...]] = {
    "W": (20.0,),
    "1": (10.0,),
    "2": (6.0,),
    "3": (2.0,),
    "R": (6.0, 22.0),
}


CYCLE = ("W", "1", "2", "3", "2", "R")  # a night's cycle, compressed: every stage appears in minutes


def hypnogram(epochs: int, rng: np.random.Generator) -> list[str]:
    """A stage per epoch: the cycle in runs of 1–3 epochs, starting awake."""
    stages: list[str] = []
    while len(stages) < epochs:
        for stage in CYCLE:
            stages.extend([stage] * int(rng.integers(1, 4)))
    return stages[:epochs]


def eeg(stages: list[str], rng: np.random.Generator) -> np.ndarray:
    """Microvolts: the stage's rhythms with a random phase and amplitude, plus noise."""
    t = np.arange(EPOCH_S * FS) / FS
    parts = []
    for stage in stages:
        signal = sum(
            rng.uniform(30, 50) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
            for f in RHYTHMS[stage]
        )
        parts.append(signal + rng.normal(0, 8, t.size))
    return np.concatenate(parts)


def write_recording(path: Path, stages: list[str], rng: np.random.Generator) -> None:
    writer = pyedflib.EdfWriter(str(path), 1, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setStartdatetime(datetime(2020, 1, 1, 22, 0, 0))  # fixed: the bytes are reproducible
        writer.setPatientName("X")
        writer.setSignalHeader(
            0,
            {
                "label": "EEG Fpz-Cz",
                "dimension": "uV",
                "sample_frequency": FS,
                "physical_max": 250.0,
                "physical_min": -250.0,
                "digital_max": 32767,
                "digital_min": -32768,
                "transducer": "",
                "prefilter": "",
            },
        )
        writer.writeSamples([np.clip(eeg(stages, rng), -250, 250)])
        for i, stage in enumerate(stages):
            writer.writeAnnotation(float(i * EPOCH_S), float(EPOCH_S), f"Sleep stage {stage}")
    finally:
        writer.close()


def write_recordings(folder: Path, n: int = 4, minutes: int = 10, seed: int = 0) -> list[Path]:
    """Write ``n`` recordings of ``minutes`` each into ``folder``; the same arguments give the same files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    epochs = max(1, minutes * 60 // EPOCH_S)
    paths = []
    for i in range(n):
        path = folder / f"synthetic-{i + 1:02d}.edf"
        write_recording(path, hypnogram(epochs, rng), rng)
        paths.append(path)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "synthetic-sleep")
    for written in write_recordings(target):
        print(written)
