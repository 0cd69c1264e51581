"""The anonymity report: exact figures on hand-computed tables, a naive cross-check, and no data leaks."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter, defaultdict

import pyarrow as pa
import pytest

from sanctum.deid.metrics import BUCKETS, NOTE_SAMPLE_BASIS, anonymity_report

QIS = ["age", "sex"]


def _patients() -> pa.Table:
    """Four classes: (30,F)×4, (40,M)×2, (50,F)×1 and (null,M)×2."""
    return pa.table(
        {
            "age": [30, 30, 30, 30, 40, 40, 50, None, None],
            "sex": ["F", "F", "F", "F", "M", "M", "F", "M", "M"],
            "dx": ["flu", "flu", "cold", "asthma", "flu", "flu", "cold", "flu", "cold"],
        }
    )


def _histogram(report) -> dict[str, tuple[int, int]]:
    return {b.label: (b.classes, b.records) for b in report.class_size_histogram}


def test_hand_computed_k_classes_histogram_and_prosecutor_risk() -> None:
    r = anonymity_report(_patients(), QIS, ["dx"], k_threshold=3)
    assert r.rows == 9
    assert r.quasi_identifiers == ("age", "sex")
    assert r.k == 1
    assert r.equivalence_classes == 4
    assert r.records_in_small_classes == 5  # sizes 2 + 1 + 2 are below 3
    assert r.small_class_share == 5 / 9
    assert _histogram(r) == {
        "1": (1, 1),
        "2": (2, 4),
        "3-4": (1, 4),
        "5-9": (0, 0),
        "10-19": (0, 0),
        "20+": (0, 0),
    }
    assert r.prosecutor_risk_max == 1.0
    assert r.prosecutor_risk_average == 4 / 9  # mean over the 9 records of 1/class size
    [dx] = r.sensitive
    assert (dx.column, dx.distinct_l, dx.entropy_l) == ("dx", 1, 1.0)  # (40,M) and (50,F) have one dx


def test_without_population_journalist_risk_is_prosecutor_risk_and_says_so() -> None:
    r = anonymity_report(_patients(), QIS)
    assert r.journalist_basis == "sample"
    assert (r.journalist_risk_max, r.journalist_risk_average) == (1.0, 4 / 9)
    assert NOTE_SAMPLE_BASIS in r.notes
    assert r.population_rows is None and r.population_unmatched_classes is None


def test_both_l_diversities_hand_computed() -> None:
    table = pa.table(
        {
            "g": ["A"] * 3 + ["B"] * 4 + ["C"] * 2,
            "s": ["x", "x", "y", "x", "y", "z", "w", "x", "y"],
            "t": ["u", "u", "u", "u", "v", "u", "v", "u", "v"],
        }
    )
    r = anonymity_report(table, ["g"], ["s", "t"], k_threshold=2)
    s, t = r.sensitive
    # s: A = {x:2, y:1} (2 values), B = 4 distinct values, C = 2 distinct values.
    # Entropy: A has the least, H = -(2/3 ln 2/3 + 1/3 ln 1/3) = ln 3 - (2/3) ln 2, so l = 3 / 2^(2/3).
    assert s.distinct_l == 2
    assert s.entropy_l == pytest.approx(3 / 2 ** (2 / 3), abs=1e-9)
    assert s.entropy_l == pytest.approx(1.889881575, abs=1e-9)
    # t: A = {u} only, so both are 1.
    assert (t.column, t.distinct_l, t.entropy_l) == ("t", 1, 1.0)
    assert (r.k, r.equivalence_classes, r.records_in_small_classes) == (2, 3, 0)


def test_entropy_l_of_evenly_spread_classes_is_their_distinct_count() -> None:
    table = pa.table({"g": [1] * 4 + [2] * 6, "s": ["a", "b", "c", "d"] + ["a", "b", "c"] * 2})
    [s] = anonymity_report(table, ["g"], ["s"]).sensitive
    assert s.distinct_l == 3
    assert s.entropy_l == pytest.approx(3.0, abs=1e-9)


def test_journalist_risk_against_a_population() -> None:
    population = pa.table(
        {
            "age": [30] * 10 + [40] * 2 + [50] * 4 + [None] * 5 + [60] * 7,
            "sex": ["F"] * 10 + ["M"] * 2 + ["F"] * 4 + ["M"] * 5 + ["F"] * 7,
        }
    )
    r = anonymity_report(_patients(), QIS, population=population)
    assert r.journalist_basis == "population"
    assert r.population_rows == 28
    assert r.population_unmatched_classes == 0
    assert r.journalist_risk_max == 1 / 2  # (40,M) has 2 people in the population
    # per record 1/F: 4 × 1/10, 2 × 1/2, 1 × 1/4, 2 × 1/5 (the null class matches the population's nulls)
    assert r.journalist_risk_average == pytest.approx((4 / 10 + 2 / 2 + 1 / 4 + 2 / 5) / 9, rel=1e-12)
    assert (r.prosecutor_risk_max, r.prosecutor_risk_average) == (1.0, 4 / 9)  # unchanged
    assert NOTE_SAMPLE_BASIS not in r.notes


def test_population_missing_or_smaller_class_falls_back_to_the_sample_count() -> None:
    population = pa.table({"age": [30, 30, 40, 40, 40, None, None, None], "sex": ["F"] * 2 + ["M"] * 6})
    r = anonymity_report(_patients(), QIS, population=population)
    # (30,F) is 4 here but 2 there; (50,F) is missing: both use the sample's own size.
    assert r.population_unmatched_classes == 2
    assert r.journalist_risk_max == 1.0
    assert r.journalist_risk_average == pytest.approx((4 / 4 + 2 / 3 + 1 / 1 + 2 / 3) / 9, rel=1e-12)
    assert any("2 equivalence class(es)" in note for note in r.notes)


def test_null_is_a_value_of_its_own_in_quasi_identifiers_and_sensitive_columns() -> None:
    table = pa.table(
        {
            "n": pa.array([None, None, 0, 0], pa.int64()),
            "s": pa.array([None, "", "", ""], pa.string()),
            "dx": pa.array([None, "x", "x", "x"], pa.string()),
        }
    )
    r = anonymity_report(table, ["n", "s"], ["dx"])
    # classes: (null,null)×1, (null,"")×1, (0,"")×2 — null is neither 0 nor ""
    assert (r.equivalence_classes, r.k) == (3, 1)
    assert _histogram(r)["1"] == (2, 2)
    two = anonymity_report(table, ["n"], ["dx"])
    assert two.sensitive[0].distinct_l == 1  # (null) has {null, x}: 2 values; (0) has {x}: 1
    assert anonymity_report(table.slice(0, 2), ["n"], ["dx"]).sensitive[0].distinct_l == 2


def test_all_null_quasi_identifier_is_one_class() -> None:
    table = pa.table({"q": pa.nulls(7, pa.string())})
    r = anonymity_report(table, ["q"])
    assert (r.k, r.equivalence_classes, r.prosecutor_risk_max) == (7, 1, 1 / 7)


@pytest.mark.parametrize("with_population", [False, True])
def test_empty_table_gives_an_empty_report(with_population: bool) -> None:
    empty = _patients().slice(0, 0)
    r = anonymity_report(empty, QIS, ["dx"], population=_patients() if with_population else None)
    assert (r.rows, r.k, r.equivalence_classes, r.records_in_small_classes) == (0, None, 0, 0)
    assert r.small_class_share == 0.0
    assert (r.prosecutor_risk_max, r.prosecutor_risk_average) == (0.0, 0.0)
    assert (r.journalist_risk_max, r.journalist_risk_average) == (0.0, 0.0)
    assert [(s.distinct_l, s.entropy_l) for s in r.sensitive] == [(None, None)]
    assert all(b.classes == 0 and b.records == 0 for b in r.class_size_histogram)
    assert r.journalist_basis == ("population" if with_population else "sample")
    json.dumps(r.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quasi_identifiers": ["age", "postcode"]}, "'postcode'"),
        ({"quasi_identifiers": QIS, "sensitive": ["hiv_status"]}, "'hiv_status'"),
        ({"quasi_identifiers": []}, "at least one quasi-identifier"),
        ({"quasi_identifiers": "age"}, "not one string"),
        ({"quasi_identifiers": ["age", "age"]}, "more than once: 'age'"),
        ({"quasi_identifiers": QIS, "sensitive": ["sex"]}, "both quasi-identifier and sensitive: 'sex'"),
        ({"quasi_identifiers": QIS, "k_threshold": 0}, "k_threshold"),
        ({"quasi_identifiers": QIS, "k_threshold": 2.5}, "k_threshold"),
        ({"quasi_identifiers": QIS, "k_threshold": True}, "k_threshold"),
        ({"quasi_identifiers": QIS, "population": pa.table({"age": [1]})}, "'sex' is not in the population"),
        (
            {"quasi_identifiers": QIS, "population": pa.table({"age": ["30"], "sex": ["F"]})},
            "'age' is int64 in the table but string in the population",
        ),
    ],
)
def test_bad_input_is_a_value_error_naming_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        anonymity_report(_patients(), **kwargs)


def test_bad_input_on_an_empty_table_is_still_rejected() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        anonymity_report(_patients().slice(0, 0), ["nope"])


def test_not_a_table_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"pyarrow\.Table"):
        anonymity_report(_patients().to_pylist(), QIS)  # type: ignore[arg-type]


def test_duplicate_column_in_the_table_is_rejected() -> None:
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["age", "age"])
    with pytest.raises(ValueError, match="'age' appears 2 times"):
        anonymity_report(table, ["age"])


def test_awkward_column_names_are_quoted_not_executed() -> None:
    evil = "x\" FROM read_csv('/etc/passwd') --"
    table = pa.table({evil: [1, 1, 2], "size": [5, 5, 5], "n": ["a", "b", "a"], "q0": [0, 0, 0]})
    r = anonymity_report(table, [evil, "size", "q0"], ["n"])
    assert (r.k, r.equivalence_classes) == (1, 2)
    assert r.sensitive[0].distinct_l == 1
    assert r.quasi_identifiers == (evil, "size", "q0")


def test_dictionary_encoded_and_date_columns_group_by_value() -> None:
    import datetime as dt

    table = pa.table(
        {
            "modality": pa.array(["CT", "MR", "CT", "CT"]).dictionary_encode(),
            "study_date": [dt.date(2020, 1, 1), dt.date(2020, 1, 1), dt.date(2020, 1, 1), None],
        }
    )
    r = anonymity_report(table, ["modality", "study_date"])
    assert (r.equivalence_classes, r.k) == (3, 1)
    assert _histogram(r)["2"] == (1, 2)


def test_report_contains_no_values_from_the_table() -> None:
    marker = "ZQ-MARKER-4417"
    table = pa.table(
        {
            "pseudo_id": [f"{marker}-{i}" for i in range(6)],
            "site": [marker, "b", "b", "c", "c", "c"],
            "year": [1901, 2001, 2001, 2002, 2002, 2002],
            "dx": [f"{marker}-dx", "x", "y", "x", "x", "z"],
        }
    )
    population = pa.concat_tables([table, table])
    for pop in (None, population):
        r = anonymity_report(table, ["site", "year"], ["dx"], population=pop)
        text = json.dumps(r.to_dict(), allow_nan=False)
        assert r.k == 1  # the marker row is a class of its own: its key is the thing that must not leak
        for leaked in (marker, "1901", "2001", "2002"):
            assert leaked not in text
            assert leaked not in repr(r)


def test_to_dict_is_json_ready_and_complete() -> None:
    r = anonymity_report(_patients(), QIS, ["dx"])
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["quasi_identifiers"] == QIS
    assert [b["label"] for b in d["class_size_histogram"]] == [label for label, _, _ in BUCKETS]
    assert d["sensitive"] == [{"column": "dx", "distinct_l": 1, "entropy_l": 1.0}]
    assert d["journalist_basis"] == "sample"
    with pytest.raises(AttributeError):
        r.k = 5  # type: ignore[misc]  # frozen: a report is a record of what was measured


# --- cross-check against a naive pure-Python implementation -------------------------------------


def _naive(
    rows: list[dict], qis: list[str], sens: list[str], k_threshold: int, pop: list[dict] | None
) -> dict:
    classes = Counter(tuple(r[q] for q in qis) for r in rows)
    n = len(rows)
    sizes = list(classes.values())
    out: dict = {
        "k": min(sizes),
        "classes": len(classes),
        "small": sum(s for s in sizes if s < k_threshold),
        "pros_max": 1 / min(sizes),
        "pros_avg": sum(1 / classes[tuple(r[q] for q in qis)] for r in rows) / n,
        "hist": {},
    }
    for label, lo, hi in BUCKETS:
        inside = [s for s in sizes if s >= lo and (hi is None or s <= hi)]
        out["hist"][label] = (len(inside), sum(inside))
    for s in sens:
        values: dict[tuple, Counter] = defaultdict(Counter)
        for r in rows:
            values[tuple(r[q] for q in qis)][r[s]] += 1
        entropies = []
        for counts in values.values():
            total = sum(counts.values())
            entropies.append(-sum(c / total * math.log(c / total) for c in counts.values()))
        out[s] = (min(len(c) for c in values.values()), math.exp(max(0.0, min(entropies))))
    if pop is not None:
        pop_classes = Counter(tuple(r[q] for q in qis) for r in pop)
        f = {key: max(size, pop_classes.get(key, 0)) for key, size in classes.items()}
        out["jour_max"] = 1 / min(f.values())
        out["jour_avg"] = sum(1 / f[tuple(r[q] for q in qis)] for r in rows) / n
    return out


def _random_rows(rng: random.Random, n: int) -> list[dict]:
    def pick(options: list) -> object:
        return rng.choice(options)

    return [
        {
            "age": pick([20, 30, 40, 50, None]),
            "sex": pick(["F", "M", None]),
            "zip3": pick(["100", "101", "102"]),
            "dx": pick(["a", "b", "c", "d", None]),
            "ward": pick([1, 2]),
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_matches_a_naive_implementation_on_random_tables(seed: int) -> None:
    rng = random.Random(seed)
    rows = _random_rows(rng, rng.randint(1, 300))
    pop_rows = rows + _random_rows(rng, rng.randint(0, 600))
    qis = ["age", "sex", "zip3"][: rng.randint(1, 3)]
    k_threshold = rng.randint(1, 6)
    table, population = pa.Table.from_pylist(rows), pa.Table.from_pylist(pop_rows)
    expected = _naive(rows, qis, ["dx", "ward"], k_threshold, pop_rows)

    r = anonymity_report(table, qis, ["dx", "ward"], k_threshold=k_threshold, population=population)
    assert (r.rows, r.k, r.equivalence_classes) == (len(rows), expected["k"], expected["classes"])
    assert r.records_in_small_classes == expected["small"]
    assert _histogram(r) == expected["hist"]
    assert r.prosecutor_risk_max == pytest.approx(expected["pros_max"], rel=1e-12)
    assert r.prosecutor_risk_average == pytest.approx(expected["pros_avg"], rel=1e-12)
    assert r.journalist_risk_max == pytest.approx(expected["jour_max"], rel=1e-12)
    assert r.journalist_risk_average == pytest.approx(expected["jour_avg"], rel=1e-12)
    assert r.population_unmatched_classes == 0  # the population contains the sample
    for s in r.sensitive:
        distinct, entropy = expected[s.column]
        assert s.distinct_l == distinct
        assert s.entropy_l == pytest.approx(entropy, abs=1e-9)

    sample_only = anonymity_report(table, qis, k_threshold=k_threshold)
    assert sample_only.journalist_risk_max == sample_only.prosecutor_risk_max
    assert sample_only.journalist_risk_average == sample_only.prosecutor_risk_average
