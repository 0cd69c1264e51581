"""Each automatic export check on real small files: CSV and Parquet tables, DICOM from pydicom's
wheel, NumPy arrays, figures, text and ACRO's results.json."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from airlock_helpers import SAFE_TABLE, SMALL_CELL_TABLE, ZERO_CELL_TABLE, parquet_bytes
from sanctum.airlock import acro
from sanctum.airlock.checks import check_file
from sanctum.airlock.rules import ExportRules

RULES = ExportRules()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _rules(result) -> dict[str, str]:
    return {f["rule"]: f["verdict"] for f in result.findings}


def _messages(result) -> str:
    return " | ".join(f["message"] for f in result.findings)


def test_a_frequency_table_with_every_cell_at_least_ten_passes() -> None:
    result = check_file("tables/by_sex.csv", SAFE_TABLE, RULES)
    assert result.verdict == "pass", result.findings
    assert result.columns == ["sex", "age_band", "n"] and result.rows == 4
    assert "at least 10" in _messages(result)


def test_a_cell_below_the_threshold_fails_and_zeros_need_review() -> None:
    small = check_file("t.csv", SMALL_CELL_TABLE, RULES)
    assert small.verdict == "fail" and "1 cell(s) below the minimum count of 10" in _messages(small)
    assert "3" not in _messages(small).replace("10", "")  # counts of cells, never the cell values
    zero = check_file("t.csv", ZERO_CELL_TABLE, RULES)
    assert zero.verdict == "review" and _rules(zero)["zeros"] == "review"
    lenient = check_file("t.csv", ZERO_CELL_TABLE, ExportRules(zeros_need_review=False))
    assert lenient.verdict == "pass"
    stricter = check_file("t.csv", SAFE_TABLE, ExportRules(min_cell_count=30))
    assert stricter.verdict == "fail"


def test_parquet_cross_tabulations_are_checked_like_csv() -> None:
    crosstab = parquet_bytes({"site": ["a", "b", "c"], "male": [12, 4, 30], "female": [15, 22, 0]})
    result = check_file("crosstab.parquet", crosstab, RULES)
    assert result.verdict == "fail"
    assert "column 'male': 1 cell(s) below" in _messages(result)
    assert "column 'female': 1 zero cell(s)" in _messages(result)
    # Repeated labels are rows of data, not cells of a table: numbers there are not counts.
    rows = parquet_bytes({"site": ["a", "a", "b"], "age": [4, 5, 6]})
    assert check_file("rows.parquet", rows, RULES).verdict == "pass"


@pytest.mark.parametrize(
    ("column", "reason"),
    [
        ("patient_id", "named like an identifier"),
        ("Email Address", "named like an identifier"),
        ("NHSNumber", "named like an identifier"),
        ("dateOfBirth", "date of birth"),
        ("dob", "date of birth"),
    ],
)
def test_identifier_and_birth_date_columns_fail(column: str, reason: str) -> None:
    table = f"{column},score\nx,1.5\ny,2.5\n".encode()
    result = check_file("t.csv", table, RULES)
    assert result.verdict == "fail" and reason in _messages(result)


def test_project_declared_identifier_columns_fail() -> None:
    table = b"cohort_key,score\nA,1.5\nB,2.5\n"
    assert check_file("t.csv", table, RULES).verdict == "pass"
    declared = ExportRules(identifier_columns=RULES.identifier_columns | {"cohortkey"})
    assert check_file("t.csv", table, declared).verdict == "fail"


@pytest.mark.parametrize(
    "values",
    [
        ["PABCDEFGHIJKLMNOPQRS", "P234567ABCDEFGHIJKLM", "PZZZZZZZZZZZZZZZZZZZ"],  # Sanctum's pseudonyms
        [str(uuid.UUID(int=i)) for i in range(1, 4)],
        ["2.25.1234567890123", "2.25.9876543210987", "1.2.840.10008.1"],  # DICOM UIDs
        ["9f86d081884c7d659a2feaa0c55ad015", "a3f5b1c2d4e6f7081928374655647382", "deadbeefdeadbeef"],
    ],
)
def test_columns_of_pseudonym_looking_values_fail_whatever_their_name(values: list[str]) -> None:
    table = parquet_bytes({"ref": values, "score": [1.0, 2.0, 3.0]})
    result = check_file("t.parquet", table, RULES)
    assert result.verdict == "fail" and "look like pseudonyms" in _messages(result)


def test_too_many_rows_fail_as_row_level_data() -> None:
    table = "x,y\n" + "".join(f"{i},{i * 2}\n" for i in range(50))
    assert check_file("t.csv", table.encode(), ExportRules(max_rows=49)).verdict == "fail"
    assert check_file("t.csv", table.encode(), ExportRules(max_rows=50)).verdict == "pass"


def test_dicom_and_raw_arrays_are_blocked_unless_the_rules_allow_them() -> None:
    dicom = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    for name in ("scan.dcm", "scan.csv", "scan.txt"):  # renaming does not help
        result = check_file(name, dicom, RULES)
        assert result.verdict == "fail" and "dicom" in _messages(result), name
    array = io.BytesIO()
    np.save(array, np.arange(10))
    assert check_file("x.npy", array.getvalue(), RULES).verdict == "fail"
    allowed = ExportRules(allow_images=True)
    assert check_file("scan.dcm", dicom, allowed).verdict == "review"


def test_file_types_sizes_and_content_that_does_not_match_the_name() -> None:
    assert check_file("plot.png", PNG, RULES).verdict == "review"
    mismatch = check_file("plot.csv", PNG, RULES)
    assert mismatch.verdict == "fail" and "does not match the name" in _messages(mismatch)
    assert check_file("model.pkl", b"\x80\x04K\x01.", RULES).verdict == "fail"
    assert check_file("bundle.zip", b"PK\x03\x04rest", RULES).verdict == "fail"
    big = check_file("t.csv", SAFE_TABLE, ExportRules(max_file_bytes=10))
    assert big.verdict == "fail" and "more than the limit of 10" in _messages(big)
    text = check_file("notes.md", b"# Results\nAll good.\n", RULES)
    assert text.verdict == "review" and _rules(text) == {"free_text": "review"}
    broken = check_file("t.csv", b"a,b\n1,2,3\n", RULES)
    assert broken.verdict == "fail" and "not a readable table" in _messages(broken)


def test_a_quoted_line_break_is_read_as_one_value() -> None:
    table = b'label,n\n"two\nlines",12\nother,40\n'
    result = check_file("t.csv", table, RULES)
    assert result.verdict == "pass" and result.rows == 2


def test_acro_results_are_parsed_and_matched_to_their_files() -> None:
    document = {
        "version": "0.4.5",
        "results": {
            "output_0": {"uid": "output_0", "status": "review", "type": "table", "summary": "review; dof",
                         "files": [{"name": "output_0_0.csv", "sdc": {}}], "exception": "needed for Table 1"},
            "output_1": {"uid": "output_1", "status": "pass", "type": "regression", "summary": "pass",
                         "files": [{"name": "output_1_0.csv", "sdc": {}}], "exception": ""},
        },
    }  # fmt: skip
    outputs = acro.parse(json.dumps(document).encode())
    assert outputs is not None and [o.status for o in outputs] == ["review", "pass"]
    result = check_file("acro/output_0_0.csv", SAFE_TABLE, RULES, acro_outputs=outputs)
    assert result.verdict == "review" and "exception requested: needed for Table 1" in _messages(result)
    summary = check_file("results.json", json.dumps(document).encode(), RULES)
    assert "1 pass, 1 review, 0 fail" in _messages(summary)
    assert acro.parse(b'{"results": {"x": {"status": "maybe"}}}') is None
    assert acro.parse(b"not json") is None


@pytest.mark.parametrize(("every", "verdict"), [(1, "fail"), (2, "fail"), (5, "pass")])
def test_long_columns_are_sampled_first_and_matched_in_full_near_the_threshold(
    every: int, verdict: str
) -> None:
    """20,000 values: clearly above (all) or below (one in five) is decided by the sample; one in
    two sits on the threshold, so every value is matched."""
    rows = 20_000
    refs = [f"{i:020x}" if i % every == 0 else f"site {i % 7}" for i in range(rows)]
    table = parquet_bytes({"ref": refs, "score": [1.0] * rows})
    result = check_file("t.parquet", table, ExportRules(max_rows=rows))
    assert result.verdict == verdict, result.findings
    if verdict == "fail":
        assert f"{100 // every}% of its values look like pseudonyms" in _messages(result)
