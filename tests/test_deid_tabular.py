"""Tests for column policies on clinical tables (sanctum.deid.table_policy, sanctum.deid.tabular).

The proof asked for: a deterministic synthetic table carries a unique marker in every row of every
identifying column; after ingest the table, written as Parquet and as CSV, contains none of them,
while the kept columns are byte for byte what came in. And the table agrees with DICOM: the same
patient gets the same pseudonym and the same date shift as in that patient's images.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import warnings

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.data import get_testdata_file

from sanctum.datasets.tables import read_table_upload, to_parquet_bytes
from sanctum.deid.dicom import deidentify
from sanctum.deid.profile import Options
from sanctum.deid.pseudonyms import Pseudonymiser
from sanctum.deid.table_policy import PolicyError, TablePolicy, dump_policy, load_policy
from sanctum.deid.tabular import TabularError, apply_ingest, view_for_role

KEY = b"project-one-secret-key-0123456789abcdef"
OTHER_KEY = b"project-two-secret-key-0123456789abcdef"
P = Pseudonymiser(KEY)
SECRET = "ZZSECRET-4711"  # a value that must never appear in an error message


def policy(columns: dict, **extra: object) -> TablePolicy:
    return load_policy({"columns": columns, **extra})


def one(action: str, **params: object) -> dict:
    return {"action": action, **params}


def ingest(table: pa.Table, columns: dict, **extra: object) -> pa.Table:
    return apply_ingest(table, policy(columns, **extra), P)[0]


def rejected(table: pa.Table, columns: dict, **extra: object) -> str:
    with pytest.raises(TabularError) as info:
        apply_ingest(table, policy(columns, **extra), P)
    message = str(info.value)
    assert SECRET not in message
    return message


# --- the proof of privacy ----------------------------------------------------------------------

ROWS = 300
IDENTIFYING = ("patient_id", "name", "mrn", "birth_date", "zip", "phone", "notes")
KEPT = ("sex", "hba1c", "visit_no")


def marker(column: str, i: int) -> str:
    return f"MK{column.upper()}{i:05d}Q"


def synthetic_table() -> tuple[pa.Table, list[bytes]]:
    """A deterministic clinical table (no real data) with a marker in each identifying cell.

    Birth dates are in 1901-1902, far from everything else, so neither a shifted date nor a kept
    value can equal one by chance; their markers are the ISO text and Arrow's int32 day number.
    """
    births = [dt.date(1901, 1, 1) + dt.timedelta(days=i) for i in range(ROWS)]
    table = pa.table(
        {
            "patient_id": [marker("patient_id", i // 3) for i in range(ROWS)],  # three visits per patient
            "name": [marker("name", i) for i in range(ROWS)],
            "mrn": [marker("mrn", i) for i in range(ROWS)],
            "birth_date": pa.array(births, pa.date32()),
            "zip": [marker("zip", i) for i in range(ROWS)],
            "phone": [marker("phone", i) + "77" for i in range(ROWS)],
            "notes": [f"seen by Dr X, {marker('notes', i)} lives nearby" for i in range(ROWS)],
            "visit_date": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(ROWS)]),
            "sex": ["F" if i % 2 else "M" for i in range(ROWS)],
            "hba1c": [40.0 + (i % 37) * 0.5 for i in range(ROWS)],
            "visit_no": [i % 3 + 1 for i in range(ROWS)],
        }
    )
    markers = [marker("patient_id", i).encode() for i in range(ROWS // 3)]
    markers += [marker(c, i).encode() for c in IDENTIFYING[1:] if c != "birth_date" for i in range(ROWS)]
    markers += [d.isoformat().encode() for d in births]
    markers += [(d - dt.date(1970, 1, 1)).days.to_bytes(4, "little", signed=True) for d in births]
    return table, markers


PRIVACY_POLICY = {
    "patient_column": "patient_id",
    "columns": {
        "patient_id": one("pseudonymise"),
        "name": one("drop"),
        "mrn": one("pseudonymise"),
        "birth_date": one("generalise", date="year"),
        "zip": one("generalise", prefix=3),
        "phone": one("mask", keep_last=2),
        "notes": one("drop"),
        "visit_date": one("date_shift"),
        "sex": one("keep"),
        "hba1c": one("keep"),
        "visit_no": one("keep"),
    },
    "quasi_identifiers": ["birth_date", "zip", "sex"],
    "sensitive": ["hba1c"],
}


def csv_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()


def plain_parquet_bytes(table: pa.Table) -> bytes:
    """Uncompressed Parquet: searching compressed bytes for a marker would prove nothing."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="NONE")
    return sink.getvalue()


def test_no_identifying_marker_survives_in_parquet_or_csv() -> None:
    table, markers = synthetic_table()
    # The search must be able to see markers: the input has every one of them.
    raw = plain_parquet_bytes(table) + csv_bytes(table)
    assert all(m in raw for m in markers)
    out, report = apply_ingest(table, load_policy(PRIVACY_POLICY), P)
    for blob in (plain_parquet_bytes(out), csv_bytes(out), to_parquet_bytes(out)):
        found = [m for m in markers if m in blob]
        assert found == []
    assert not [m for m in markers if m in json.dumps(report.to_dict()).encode()]
    assert out.column_names == [c for c in table.column_names if c not in ("name", "notes")]


def test_kept_columns_are_byte_identical() -> None:
    table, _ = synthetic_table()
    out, report = apply_ingest(table, load_policy(PRIVACY_POLICY), P)
    assert to_parquet_bytes(out.select(list(KEPT))) == to_parquet_bytes(table.select(list(KEPT)))
    assert csv_bytes(out.select(list(KEPT))) == csv_bytes(table.select(list(KEPT)))
    assert all(report.columns[c].changed == 0 for c in KEPT)


def test_report_counts_without_values() -> None:
    table, _ = synthetic_table()
    _, report = apply_ingest(table, load_policy(PRIVACY_POLICY), P)
    summary = report.to_dict()
    assert summary["rows"] == ROWS
    assert summary["columns"]["name"] == {"action": "drop", "changed": ROWS}
    assert summary["columns"]["zip"] == {"action": "generalise", "changed": ROWS}
    assert summary["columns"]["visit_date"] == {"action": "date_shift", "changed": ROWS}


# --- consistency with DICOM --------------------------------------------------------------------


def dicom_for(patient: str, study_date: str, key: bytes) -> pydicom.Dataset:
    warnings.simplefilter("ignore", UserWarning)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.StudyDate = patient, study_date
    buf = io.BytesIO()
    ds.save_as(buf)
    result = deidentify(buf.getvalue(), Pseudonymiser(key), Options(longitudinal="modified"))
    assert result.output is not None
    return pydicom.dcmread(io.BytesIO(result.output))


def test_same_pseudonym_and_date_shift_as_dicom() -> None:
    patient, day = "NHS-943-476-5919", dt.date(2021, 3, 4)
    table = pa.table({"patient_id": [patient], "scan_date": pa.array([day])})
    columns = {"patient_id": one("pseudonymise"), "scan_date": one("date_shift")}
    images = dicom_for(patient, day.strftime("%Y%m%d"), KEY)
    out = ingest(table, columns, patient_column="patient_id").to_pylist()[0]
    assert out["patient_id"] == images.PatientID == P.patient_id(patient)
    assert out["scan_date"].strftime("%Y%m%d") == images.StudyDate
    assert out["scan_date"] == day + dt.timedelta(days=P.date_offset_days(P.patient_id(patient)))
    other = apply_ingest(table, policy(columns, patient_column="patient_id"), Pseudonymiser(OTHER_KEY))[0]
    assert other.to_pylist()[0]["patient_id"] != out["patient_id"]
    assert other.to_pylist()[0]["scan_date"] != out["scan_date"]
    assert (
        other.to_pylist()[0]["scan_date"].strftime("%Y%m%d")
        == dicom_for(patient, "20210304", OTHER_KEY).StudyDate
    )


def test_date_shift_keeps_type_and_intervals_within_a_patient() -> None:
    tz = pa.timestamp("us", tz="UTC")
    table = pa.table(
        {
            "pid": ["a", "a", "b", "b"],
            "d32": pa.array([dt.date(2020, 1, 1), dt.date(2020, 3, 15), dt.date(2020, 1, 1), None]),
            "d64": pa.array([dt.date(2020, 1, 1)] * 4, pa.date64()),
            "ts": pa.array([dt.datetime(2020, 1, 1, 8, 30, tzinfo=dt.UTC)] * 4, tz),
            "text": ["2020-01-01", "2020-01-11", None, "2019-12-31"],
        }
    )
    cols = {"pid": one("drop"), **{c: one("date_shift") for c in ("d32", "d64", "ts", "text")}}
    out = ingest(table, cols, patient_column="pid")
    assert [out.schema.field(c).type for c in ("d32", "d64", "ts", "text")] == [
        pa.date32(),
        pa.date64(),
        tz,
        pa.string(),
    ]
    rows = out.to_pylist()
    assert (rows[1]["d32"] - rows[0]["d32"]).days == 74
    assert rows[3]["d32"] is None and rows[2]["text"] is None
    for row, pid in zip(rows, "aabb", strict=True):
        offset = dt.timedelta(days=P.date_offset_days(P.patient_id(pid)))
        assert row["d64"] == dt.date(2020, 1, 1) + offset
        assert row["ts"] == dt.datetime(2020, 1, 1, 8, 30, tzinfo=dt.UTC) + offset
    assert rows[0]["d32"] != rows[2]["d32"]  # two patients, two offsets (for this key)
    assert dt.date.fromisoformat(rows[1]["text"]) - dt.date.fromisoformat(rows[0]["text"]) == dt.timedelta(10)


def test_integer_patient_ids_match_their_decimal_text() -> None:
    table = pa.table({"pid": pa.array([1234, None], pa.int64())})
    out = ingest(table, {"pid": one("pseudonymise")}, patient_column="pid")
    assert out.column("pid").to_pylist() == [P.patient_id("1234"), None]


def test_column_pseudonyms_do_not_link_across_columns() -> None:
    table = pa.table({"pid": ["X1", "X1"], "mrn": ["X1", "X2"], "ref": ["X1", None]})
    out = ingest(
        table,
        {"pid": one("pseudonymise"), "mrn": one("pseudonymise"), "ref": one("pseudonymise")},
        patient_column="pid",
    ).to_pylist()
    assert len({out[0]["pid"], out[0]["mrn"], out[0]["ref"]}) == 3
    assert out[1]["ref"] is None and out[1]["mrn"] != out[0]["mrn"]
    again = apply_ingest(table, policy({c: one("pseudonymise") for c in table.column_names}), P)[0]
    assert again.column("mrn").to_pylist() == [r["mrn"] for r in out]  # deterministic per key
    other = apply_ingest(
        table, policy({c: one("pseudonymise") for c in table.column_names}), Pseudonymiser(OTHER_KEY)
    )
    assert other[0].column("mrn").to_pylist()[0] != out[0]["mrn"]


# --- each action ---------------------------------------------------------------------------------


def test_generalise_bins() -> None:
    table = pa.table({"age": pa.array([0, 17, 18, 39.5, 64, 65, 120, None])})
    out = ingest(table, {"age": one("generalise", bins=[0, 18, 40, 65, 120])})
    assert out.column("age").to_pylist() == [
        "0-17",
        "0-17",
        "18-39",
        "18-39",
        "40-64",
        "65-120",
        "65-120",
        None,
    ]
    fractional = ingest(pa.table({"x": [0.5, 2.0]}), {"x": one("generalise", bins=[0, 1.5, 3])})
    assert fractional.column("x").to_pylist() == ["0-<1.5", "1.5-3"]


def test_generalise_dates_to_year_or_month() -> None:
    table = pa.table({"d": pa.array([dt.date(1984, 3, 12), None]), "s": ["1984-03-12", None]})
    year = ingest(table, {"d": one("generalise", date="year"), "s": one("generalise", date="month")})
    assert year.to_pylist() == [{"d": "1984", "s": "1984-03"}, {"d": None, "s": None}]


def test_generalise_prefix() -> None:
    table = pa.table({"zip": ["SW1A 1AA", "123", None], "z5": pa.array([2139, 90210, None])})
    out = ingest(table, {"zip": one("generalise", prefix=3), "z5": one("generalise", prefix=2)})
    assert out.column("zip").to_pylist() == ["SW1*****", "123", None]
    assert out.column("z5").to_pylist() == ["21**", "90***", None]


def test_generalise_hierarchy() -> None:
    hierarchy = 'value,general\nI10,circulatory\nI11,circulatory\n"E11,x",endocrine\n'
    table = pa.table({"dx": ["I10", "E11,x", None, "I11"]})
    out = ingest(table, {"dx": one("generalise", hierarchy_csv=hierarchy)})
    assert out.column("dx").to_pylist() == ["circulatory", "endocrine", None, "circulatory"]
    unknown = pa.table({"dx": ["I10", SECRET]})
    defaulted = ingest(unknown, {"dx": one("generalise", hierarchy_csv=hierarchy, default="other")})
    assert defaulted.column("dx").to_pylist() == ["circulatory", "other"]
    message = rejected(unknown, {"dx": one("generalise", hierarchy_csv=hierarchy)})
    assert "'dx'" in message and "row 2" in message


def test_mask() -> None:
    table = pa.table({"phone": ["07700900123", "12", None], "name": ["Ann", "Bob", None]})
    out = ingest(table, {"phone": one("mask", keep_last=2), "name": one("mask", value="REDACTED")})
    assert out.column("phone").to_pylist() == ["****23", "****", None]
    assert out.column("name").to_pylist() == ["REDACTED", "REDACTED", None]


def test_top_bottom_code() -> None:
    table = pa.table({"age": pa.array([5, 18, 50, 97, None]), "w": [10.5, 200.0, float("nan"), 70.0, None]})
    out = ingest(table, {"age": one("top_bottom_code", min=18, max=90), "w": one("top_bottom_code", max=150)})
    assert out.column("age").to_pylist() == [18, 18, 50, 90, None]
    assert out.schema.field("age").type == pa.int64()
    assert out.column("w").to_pylist()[:2] == [10.5, 150.0] and out.column("w").to_pylist()[4] is None


def test_dictionary_encoded_and_csv_upload_columns() -> None:
    upload = b"patient_id,visit,age\nA,2020-01-02,34\nB,2021-05-06,\n"
    table = read_table_upload(upload, "visits.csv")
    table = table.set_column(0, "patient_id", table.column("patient_id").dictionary_encode())
    out = ingest(
        table,
        {
            "patient_id": one("pseudonymise"),
            "visit": one("date_shift"),
            "age": one("generalise", bins=[0, 50, 120]),
        },
        patient_column="patient_id",
    )
    assert out.column("patient_id").to_pylist() == [P.patient_id("A"), P.patient_id("B")]
    assert out.column("age").to_pylist() == ["0-49", None]


# --- rejections ----------------------------------------------------------------------------------


def test_column_not_in_policy_rejects() -> None:
    table = pa.table({"a": [1], "free_text": [SECRET]})
    message = rejected(table, {"a": one("keep")})
    assert "'free_text'" in message and "not in the policy" in message


def test_policy_column_missing_from_table_rejects() -> None:
    message = rejected(pa.table({"a": [1]}), {"a": one("keep"), "dob": one("drop")})
    assert "'dob'" in message and "not in the table" in message


def test_unparsable_date_rejects_with_row_not_value() -> None:
    table = pa.table({"pid": ["a", "b", "c"], "d": ["2020-01-01", "2020-02-30", SECRET]})
    message = rejected(table, {"pid": one("drop"), "d": one("date_shift")}, patient_column="pid")
    assert "'d'" in message and "row 2" in message


def test_non_numeric_in_bins_rejects_with_row_not_value() -> None:
    table = pa.table({"age": ["34", "", SECRET]})
    message = rejected(table, {"age": one("generalise", bins=[0, 120])})
    assert "'age'" in message and "row 2" in message
    assert "row 3" in rejected(pa.table({"age": [1, 2, 500]}), {"age": one("generalise", bins=[0, 120])})
    assert "row 1" in rejected(pa.table({"age": [float("nan")]}), {"age": one("generalise", bins=[0, 120])})


def test_missing_patient_id_rejects_date_shift() -> None:
    table = pa.table({"pid": ["a", None, " "], "d": pa.array([dt.date(2020, 1, 1)] * 3)})
    message = rejected(table, {"pid": one("pseudonymise"), "d": one("date_shift")}, patient_column="pid")
    assert "'pid'" in message and "row 2" in message
    # Without a date shift a missing patient ID stays missing.
    out = ingest(table.drop_columns(["d"]), {"pid": one("pseudonymise")}, patient_column="pid")
    assert out.column("pid").to_pylist()[1] is None


@pytest.mark.parametrize(
    ("column", "action"),
    [
        (pa.array([1.5]), one("pseudonymise")),
        (pa.array([1]), one("date_shift")),
        (pa.array([SECRET]), one("top_bottom_code", max=3)),
        (pa.array([1.0]), one("generalise", prefix=2)),
        (pa.array([17]), one("top_bottom_code", min=18.5)),
        (pa.array([5]), one("generalise", date="year")),
    ],
)
def test_wrong_column_type_rejects(column: pa.Array, action: dict) -> None:
    table = pa.table({"pid": ["a"], "c": column})
    assert "'c'" in rejected(table, {"pid": one("drop"), "c": action}, patient_column="pid")


# --- views per role ------------------------------------------------------------------------------


VIEW_POLICY = {
    "patient_column": "patient_id",
    "columns": {
        "patient_id": one("pseudonymise"),
        "birth_date": one("date_shift"),
        "age": one("keep"),
        "mrn": one("pseudonymise"),
        "sex": one("keep"),
    },
    "views": {
        "data_scientist": {
            "birth_date": one("generalise", date="year"),
            "age": one("generalise", bins=[0, 18, 65, 120]),
            "mrn": one("drop"),
        },
        "output_checker": {"mrn": one("mask", value="hidden")},
    },
}


def stored_table() -> tuple[pa.Table, TablePolicy]:
    table = pa.table(
        {
            "patient_id": ["a", "b"],
            "birth_date": pa.array([dt.date(1960, 6, 1), None]),
            "age": [64, 30],
            "mrn": ["M1", "M2"],
            "sex": ["F", "M"],
        }
    )
    pol = load_policy(VIEW_POLICY)
    return apply_ingest(table, pol, P)[0], pol


def test_views_reduce_the_stored_table_per_role() -> None:
    stored, pol = stored_table()
    science = view_for_role(stored, pol, "data_scientist")
    assert science.column_names == ["patient_id", "birth_date", "age", "sex"]
    shifted = stored.column("birth_date").to_pylist()[0]
    assert science.column("birth_date").to_pylist() == [str(shifted.year), None]
    assert science.column("age").to_pylist() == ["18-64", "18-64"]
    assert science.column("patient_id") == stored.column("patient_id")
    assert view_for_role(stored, pol, "output_checker").column("mrn").to_pylist() == ["hidden", "hidden"]
    for role in ("data_owner", "auditor"):
        assert view_for_role(stored, pol, role).equals(stored)


def test_view_rejects_unknown_role_and_mismatched_table() -> None:
    stored, pol = stored_table()
    with pytest.raises(TabularError, match="unknown role"):
        view_for_role(stored, pol, "admin")
    with pytest.raises(TabularError, match="'mrn'"):
        view_for_role(stored.drop_columns(["mrn"]), pol, "data_scientist")


# --- the policy document -------------------------------------------------------------------------


def test_policy_round_trips_through_json() -> None:
    pol = load_policy(json.dumps(VIEW_POLICY))
    assert load_policy(dump_policy(pol)) == pol
    assert json.loads(dump_policy(pol))["views"]["data_scientist"]["mrn"] == {"action": "drop"}
    assert load_policy(json.dumps(PRIVACY_POLICY)).stored_columns() == [
        c for c in PRIVACY_POLICY["columns"] if c not in ("name", "notes")
    ]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"columns": {"age": {"action": "blur"}}}, "column 'age'"),
        ({"columns": {"age": {}}}, 'missing "action"'),
        ({"columns": {"age": one("mask", keep_lst=2)}}, "unknown setting 'keep_lst'"),
        ({"columns": {"age": one("generalise", bins=[0, 18], prefix=2)}}, "exactly one of"),
        ({"columns": {"age": one("generalise", bins=[0, 40, 18])}}, "strictly increasing"),
        ({"columns": {"age": one("generalise", prefix=2, default="x")}}, "default applies only"),
        ({"columns": {"dx": one("generalise", hierarchy_csv="I10,circ")}}, 'header line "value,general"'),
        ({"columns": {"dx": one("generalise", hierarchy_csv="value,general\nI10")}}, "line 2 has 1"),
        ({"columns": {"n": one("mask")}}, "column 'n'"),
        ({"columns": {"n": one("mask", value="x", keep_last=1)}}, "exactly one"),
        ({"columns": {"n": one("top_bottom_code", min=90, max=18)}}, "greater than max"),
        ({"columns": {"n": one("top_bottom_code")}}, "min, max or both"),
        ({"columns": {"d": one("date_shift")}}, "needs patient_column"),
        ({"patient_column": "pid", "columns": {"pid": one("keep")}}, "must be pseudonymise or drop"),
        ({"patient_column": "pid", "columns": {"x": one("keep")}}, "not listed in columns"),
        ({"columns": {"x": one("keep")}, "views": {"scientist": {}}}, "unknown role 'scientist'"),
        ({"columns": {"x": one("keep")}, "views": {"auditor": {"y": one("drop")}}}, "column 'y'"),
        (
            {"columns": {"x": one("drop"), "y": one("keep")}, "views": {"auditor": {"x": one("drop")}}},
            "dropped on ingest",
        ),
        ({"columns": {"x": one("keep")}, "views": {"auditor": {"x": one("pseudonymise")}}}, "on ingest only"),
        (
            {"columns": {"x": one("keep")}, "views": {"auditor": {"x": one("bogus")}}},
            "views.auditor: column 'x'",
        ),
        ({"columns": {"x": one("keep")}, "quasi_identifiers": ["y"]}, "quasi_identifiers: column 'y'"),
        ({"columns": {"x": one("keep")}, "quasi_identifiers": ["x"], "sensitive": ["x"]}, "both"),
        ({"columns": {}}, "columns is empty"),
        ({"columns": {"x": one("drop")}}, "every column is dropped"),
        ({"columns": {"x": one("keep")}, "owner": "me"}, "unknown setting 'owner'"),
    ],
)
def test_bad_policies_are_rejected_with_the_column_named(doc: dict, expected: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(json.dumps(doc))
    assert expected in str(info.value)


def test_policy_that_is_not_json_is_rejected() -> None:
    with pytest.raises(PolicyError, match="invalid table policy"):
        load_policy("{not json")
