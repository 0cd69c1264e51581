"""Per-series DICOM summary as a Sanctum job: what is in an imaging dataset, without exporting it.

Walks /data/<dataset> (SANCTUM_PARAM_DATASET, default "imaging"), reads every DICOM file with
pydicom (files that are not DICOM are counted and skipped), groups instances by
SeriesInstanceUID and writes /output/series.csv: modality, instance count, image size, and the
mean/std/min/max of the pixel values after the modality LUT (Hounsfield units for CT). Pixel
columns are blank, with the reason, where pixel data is absent or cannot be decoded (a compressed
transfer syntax without its decoder, for instance).

``--data`` and ``--output`` replace /data and /output, to try the script outside the sandbox.
"""

from __future__ import annotations

import argparse
import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

COLUMNS = ["series_uid", "modality", "instances", "rows", "cols", "mean", "std", "min", "max", "pixel_note"]


@dataclass
class Series:
    """Running sums, so a series of thousands of slices never needs all its pixels in memory."""

    modality: str = ""
    instances: int = 0
    shapes: set[tuple[int, int]] = field(default_factory=set)
    n: int = 0
    total: float = 0.0
    squares: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")
    problems: list[str] = field(default_factory=list)

    def add_pixels(self, values: np.ndarray) -> None:
        values = values.astype(np.float64, copy=False)
        self.n += values.size
        self.total += float(values.sum())
        self.squares += float(np.square(values).sum())
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))

    def row(self, uid: str) -> list[object]:
        rows = sorted({r for r, _ in self.shapes})
        cols = sorted({c for _, c in self.shapes})
        size = [" ".join(map(str, rows)), " ".join(map(str, cols))]
        note = "; ".join(sorted(set(self.problems)))
        if self.problems and self.n:
            note = f"{len(self.problems)} of {self.instances} instances without pixels: {note}"
        if not self.n:
            return [uid, self.modality, self.instances, *size, "", "", "", "", note or "no pixel data"]
        mean = self.total / self.n
        std = max(0.0, self.squares / self.n - mean * mean) ** 0.5
        stats = [round(mean, 4), round(std, 4), round(self.low, 4), round(self.high, 4)]
        return [uid, self.modality, self.instances, *size, *stats, note]


def read_instance(path: Path, series: dict[str, Series]) -> bool:
    """Add one file to its series; False when it is not DICOM."""
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError):
        return False
    uid = str(ds.get("SeriesInstanceUID", "")) or "(no SeriesInstanceUID)"
    entry = series.setdefault(uid, Series())
    entry.instances += 1
    entry.modality = entry.modality or str(ds.get("Modality", ""))
    if "Rows" in ds and "Columns" in ds:
        entry.shapes.add((int(ds.Rows), int(ds.Columns)))
    if "PixelData" not in ds:
        entry.problems.append("no PixelData element")
        return True
    try:
        entry.add_pixels(np.asarray(apply_modality_lut(ds.pixel_array, ds)))
    except Exception as exc:
        entry.problems.append(f"not decodable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/data"))
    parser.add_argument("--output", type=Path, default=Path("/output"))
    args = parser.parse_args(argv)
    root = args.data / os.environ.get("SANCTUM_PARAM_DATASET", "imaging")
    series: dict[str, Series] = {}
    skipped = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        skipped += not read_instance(path, series)
    args.output.mkdir(parents=True, exist_ok=True)
    with (args.output / "series.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for uid in sorted(series):
            writer.writerow(series[uid].row(uid))
    instances = sum(s.instances for s in series.values())
    print(f"{len(series)} series, {instances} instances; {skipped} files were not DICOM")


if __name__ == "__main__":
    main()
