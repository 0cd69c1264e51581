"""Sleep staging as one trial of a hyperparameter search (``sanctum hpo``).

The same features and recording split as ``train.py``; the random forest's settings come from the
search (``trial.params``). The forest is grown in five stages and the validation accuracy after
each is reported (``trial.report``), so a median pruner can stop a hopeless trial before it has
grown all its trees; the final scores go to ``/output/metrics.json`` (``trial.finish``), which the
search reads as the trial's result. The held-out recordings here are a validation set for the
search: keep a separate test set for the final, chosen model.

``--data`` and ``--output`` replace /data and /output, to try the script outside the sandbox.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score
from train import read_recording, split, stacked

from sanctum.tracking import trial

DEFAULTS: dict[str, trial.Scalar] = {
    "n_estimators": 100,
    "max_depth": 8,
    "min_samples_leaf": 1,
    "max_features": "sqrt",
    "dataset": "sleep",
    "channel": "",
}
STAGES = 5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/data"))
    parser.add_argument("--output", type=Path, default=Path("/output"))
    args = parser.parse_args(argv)
    p = trial.params(DEFAULTS)
    root = args.data / str(p["dataset"])
    paths = sorted(path for path in root.rglob("*") if path.suffix.lower() == ".edf")
    if not paths:
        raise SystemExit(f"no EDF files under {root}")
    recordings = [read_recording(path, root, str(p["channel"]) or None) for path in paths]
    train, validation = split(recordings)
    x_train, y_train = stacked(train)
    x_val, y_val = stacked(validation)
    trees = int(p["n_estimators"])
    model = RandomForestClassifier(
        n_estimators=1,
        warm_start=True,  # each stage adds trees to the forest instead of starting again
        max_depth=int(p["max_depth"]),
        min_samples_leaf=int(p["min_samples_leaf"]),
        max_features=p["max_features"],
        random_state=0,
        n_jobs=1,
    )
    for stage in range(STAGES):
        model.n_estimators = max(stage + 1, round(trees * (stage + 1) / STAGES))
        model.fit(x_train, y_train)
        accuracy = float(accuracy_score(y_val, model.predict(x_val)))
        trial.report("val_accuracy", accuracy, step=stage)
    predicted = model.predict(x_val)
    trial.finish(
        {
            "val_accuracy": accuracy,
            "val_macro_f1": float(f1_score(y_val, predicted, average="macro")),
            "train_epochs": len(y_train),
            "val_epochs": len(y_val),
        },
        output_dir=args.output,
    )
    print(f"{len(recordings)} recordings; validation accuracy {accuracy:.4f} with {model.n_estimators} trees")


if __name__ == "__main__":
    main()
