"""Sleep staging as a Sanctum job: EEG band-power features per 30-s epoch, a random forest.

Reads every EDF file under /data/<dataset> (SANCTUM_PARAM_DATASET, default "sleep"), labels epochs
from the EDF+ annotations "Sleep stage W/1/2/3/R" (4 is merged into 3, as in AASM scoring),
trains on some labelled recordings and evaluates on the others (the last quarter, at least one),
and writes /output/metrics.json (flat scores: Sanctum shows them on the job), /output/report.json
(recordings, counts, confusion matrix) and /output/stages.csv. Recordings without stage annotations are
only predicted. Only aggregates and per-epoch stages leave the job: no signal is copied out.

``--data`` and ``--output`` replace /data and /output, to try the script outside the sandbox.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyedflib
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, confusion_matrix

EPOCH_S = 30
BANDS = {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 12.0), "beta": (12.0, 30.0)}
STAGE_LABELS = {"W": "W", "1": "N1", "2": "N2", "3": "N3", "4": "N3", "R": "REM"}
CLASSES = ["W", "N1", "N2", "N3", "REM"]


@dataclass
class Recording:
    name: str
    features: np.ndarray  # epochs × features
    labels: list[str | None] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return any(label is not None for label in self.labels)


def epoch_features(signal: np.ndarray, fs: float) -> np.ndarray:
    """Log band powers (delta, theta, alpha, beta), relative powers and log variance per epoch."""
    size = round(EPOCH_S * fs)
    epochs = signal[: len(signal) // size * size].reshape(-1, size)
    epochs = epochs - epochs.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(epochs, axis=1)) ** 2
    freqs = np.fft.rfftfreq(size, d=1 / fs)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in BANDS.values()], 1)
    relative = bands / np.maximum(bands.sum(axis=1, keepdims=True), 1e-12)
    variance = epochs.var(axis=1, keepdims=True)
    return np.hstack([np.log1p(bands), relative, np.log1p(variance)])


def stage_labels(reader: pyedflib.EdfReader, epochs: int) -> list[str | None]:
    """One label per epoch from annotations; an annotation may span several epochs."""
    labels: list[str | None] = [None] * epochs
    for onset, duration, text in zip(*reader.readAnnotations(), strict=True):
        text = str(text).strip()
        if not text.startswith("Sleep stage ") or text[12:] not in STAGE_LABELS:
            continue
        first = int(onset // EPOCH_S)
        for epoch in range(first, min(epochs, first + max(1, round(duration / EPOCH_S)))):
            labels[epoch] = STAGE_LABELS[text[12:]]
    return labels


def eeg_channel(reader: pyedflib.EdfReader, wanted: str | None) -> int:
    labels = reader.getSignalLabels()
    if wanted:
        return labels.index(wanted)
    return next((i for i, label in enumerate(labels) if "EEG" in label.upper()), 0)


def read_recording(path: Path, root: Path, channel: str | None) -> Recording:
    with pyedflib.EdfReader(str(path)) as reader:
        index = eeg_channel(reader, channel)
        features = epoch_features(reader.readSignal(index), reader.getSampleFrequency(index))
        return Recording(str(path.relative_to(root)), features, stage_labels(reader, len(features)))


def split(recordings: list[Recording]) -> tuple[list[Recording], list[Recording]]:
    labelled = [r for r in recordings if r.labelled]
    if len(labelled) < 2:
        raise SystemExit(f"need at least 2 recordings with stage annotations, found {len(labelled)}")
    n_test = max(1, len(labelled) // 4)
    return labelled[:-n_test], labelled[-n_test:]


def stacked(recordings: list[Recording]) -> tuple[np.ndarray, np.ndarray]:
    rows = [(f, y) for r in recordings for f, y in zip(r.features, r.labels, strict=True) if y is not None]
    return np.array([f for f, _ in rows]), np.array([y for _, y in rows])


def counts(labels: list[str] | np.ndarray) -> dict[str, int]:
    return {c: int(sum(1 for y in labels if y == c)) for c in CLASSES}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/data"))
    parser.add_argument("--output", type=Path, default=Path("/output"))
    args = parser.parse_args(argv)
    dataset = os.environ.get("SANCTUM_PARAM_DATASET", "sleep")
    root = args.data / dataset
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".edf")
    if not paths:
        raise SystemExit(f"no EDF files under {root}")
    recordings = [read_recording(p, root, os.environ.get("SANCTUM_PARAM_CHANNEL")) for p in paths]
    train, test = split(recordings)
    x_train, y_train = stacked(train)
    x_test, y_test = stacked(test)
    model = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(x_train, y_train)
    predicted = model.predict(x_test)
    accuracy = round(float(accuracy_score(y_test, predicted)), 4)
    report = {
        "accuracy": accuracy,
        "recordings": {"train": [r.name for r in train], "test": [r.name for r in test]},
        "epochs": {"train": len(y_train), "test": len(y_test)},
        "counts": {"train": counts(y_train), "test": counts(y_test), "predicted": counts(predicted)},
        "confusion": {
            "labels": CLASSES,
            "matrix": confusion_matrix(y_test, predicted, labels=CLASSES).tolist(),
        },
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    scores = {"accuracy": accuracy, "epochs_train": len(y_train), "epochs_test": len(y_test)}
    (args.output / "metrics.json").write_text(json.dumps(scores) + "\n")
    role = {r.name: "train" for r in train} | {r.name: "test" for r in test}
    with (args.output / "stages.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["recording", "epoch", "predicted", "annotated", "split"])
        for rec in recordings:
            for epoch, (stage, label) in enumerate(zip(model.predict(rec.features), rec.labels, strict=True)):
                writer.writerow([rec.name, epoch, stage, label or "", role.get(rec.name, "unlabelled")])
    print(f"{len(recordings)} recordings; test accuracy {accuracy} on {len(y_test)} epochs")


if __name__ == "__main__":
    main()
