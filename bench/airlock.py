"""What the airlock's automatic checks cost on a 1-million-row output table, against pandas
reading the same file in the same run.

    .venv/bin/python bench/airlock.py                 # 1M rows, CSV and Parquet, median of 9
    .venv/bin/python bench/airlock.py --rows 200000 --repeats 3

Builds a deterministic synthetic output (a site label, an age band, a pseudonym-looking reference
column, a count column, a float measure), writes it as CSV and as Parquet into memory, and times,
alternating the two, medians of ``--repeats`` (and the median of the per-pair ratios), for each
format:

- ``sanctum.airlock.checks.check_file`` on the bytes: reading the table with Arrow and every rule
  (row limit, identifier-like names, pseudonym-looking values, minimum cell count, zeros);
- ``pandas.read_csv`` / ``pandas.read_parquet`` on the same bytes: reading it at all, the peer.

``csv-quoted`` is the same table with a comma in every site label, so its values are quoted.

The target is checks ≤ 2× the pandas read. The exit status is 0 whether or not it is met: this is a
measurement, not a test. The verdict on this table is ``fail`` (too many rows, a column of
pseudonyms, small cells): every rule runs to the end whatever the earlier ones found.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sanctum.airlock.checks import check_file
from sanctum.airlock.rules import ExportRules

TARGET_RATIO = 2.0


def synthetic_output(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    digits = rng.integers(0, 16, (rows, 20))
    hexes = np.array(list("0123456789abcdef"))[digits].view(f"<U{20}").ravel()
    return pa.table(
        {
            "site": rng.choice(np.array(["north", "south", "east", "west"]), rows),
            "age_band": rng.choice(np.array(["18-40", "40-65", "65+"]), rows),
            "ref": hexes,
            "n": rng.integers(0, 200, rows),
            "mean_hr": rng.normal(72, 9, rows).round(2),
        }
    )


Timed = Callable[[], object]


def paired(check: Timed, peer: Timed, repeats: int) -> tuple[float, float, float]:
    """Medians of the two timings and of their per-pair ratio. The two alternate, so load from other
    processes on a shared machine falls on both alike."""
    check(), peer()  # warm up: imports, allocator, caches
    checks, peers, ratios = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        peer()
        middle = time.perf_counter()
        check()
        end = time.perf_counter()
        peers.append(middle - start)
        checks.append(end - middle)
        ratios.append((end - middle) / (middle - start))
    return statistics.median(checks), statistics.median(peers), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    table = synthetic_output(args.rows, args.seed)
    csv_bytes = table.to_pandas().to_csv(index=False).encode()
    # Labels with a comma are quoted, and a quoted value may hold a line break: such a file is split
    # into lines serially (the careful path), one without any quote in parallel blocks.
    quoted = table.to_pandas().assign(site=lambda f: f["site"] + ", ward").to_csv(index=False).encode()
    sink = io.BytesIO()
    pq.write_table(table, sink)
    parquet_bytes = sink.getvalue()
    rules = ExportRules()
    print(f"rows {args.rows:,}; {os.cpu_count()} CPUs; median of {args.repeats}")
    print(f"{'format':<10} {'size MiB':>9} {'checks s':>9} {'pandas s':>9} {'ratio':>6}  verdict")
    for name, data, reader in (
        ("csv", csv_bytes, lambda d: pd.read_csv(io.BytesIO(d))),
        ("csv-quoted", quoted, lambda d: pd.read_csv(io.BytesIO(d))),
        ("parquet", parquet_bytes, lambda d: pd.read_parquet(io.BytesIO(d))),
    ):
        file = f"output.{name.split('-')[0]}"
        result = check_file(file, data, rules)
        checks, peer, ratio = paired(
            lambda d=data, f=file: check_file(f, d, rules),
            lambda d=data, r=reader: r(d),
            args.repeats,
        )
        mark = "ok" if ratio <= TARGET_RATIO else "over target"
        print(
            f"{name:<10} {len(data) / 2**20:>9.1f} {checks:>9.3f} {peer:>9.3f} {ratio:>6.2f}  "
            f"{result.verdict} ({mark}; {len(result.findings)} findings)"
        )


if __name__ == "__main__":
    main()
