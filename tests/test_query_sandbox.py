"""The SQL sandbox reaches the tables it is given and nothing else; uploads become checked tables.

Pure tests: no database, no server. Every escape attempt is checked twice where it matters: the
statement check refuses it, and the locked-down DuckDB refuses it even when the check is bypassed.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sanctum.datasets.query import READ_ONLY, QueryError, connect, run_query, settings_in_force
from sanctum.datasets.tables import (
    TableError,
    from_parquet_bytes,
    read_table_upload,
    schema_json,
    sql_name,
    to_parquet_bytes,
)
from sanctum.errors import InvalidInput

# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def tables() -> dict[str, pa.Table]:
    patients = pa.table({"id": [1, 2, 3, 4], "sex": ["F", "M", "F", "M"], "age": [34, 51, 29, 77]})
    visits = pa.table(
        {
            "patient_id": [1, 1, 2, 3, 3, 3],
            "visit_date": [dt.date(2024, 1, d) for d in (2, 9, 3, 4, 5, 6)],
            "sbp": [120.0, 131.5, 140.0, float("nan"), 118.0, None],
        }
    )
    return {sql_name("patients"): patients, sql_name("clinical-visits", "cardio-study"): visits}


def refused(tables: dict[str, pa.Table], sql: str, **kwargs: object) -> str:
    with pytest.raises(QueryError) as info:
        run_query(tables, sql, max_rows=kwargs.pop("max_rows", 100), **kwargs)  # type: ignore[arg-type]
    return info.value.message


# --- queries that should work -----------------------------------------------------------------


def test_join_over_two_tables(tables) -> None:
    result = run_query(
        tables,
        """
        SELECT p.id, p.sex, count(v.sbp) AS n, avg(v.sbp) AS mean_sbp, max(v.visit_date) AS last
        FROM "patients" p JOIN "cardio_study__clinical_visits" v ON v.patient_id = p.id
        GROUP BY ALL ORDER BY p.id
        """,
        max_rows=100,
    )
    assert result.columns == ["id", "sex", "n", "mean_sbp", "last"]
    assert result.types == ["BIGINT", "VARCHAR", "BIGINT", "DOUBLE", "DATE"]
    # NaN counts as a value in DuckDB and poisons the average: it comes back as null, not NaN.
    assert result.rows == [
        [1, "F", 2, 125.75, "2024-01-09"],
        [2, "M", 1, 140.0, "2024-01-03"],
        [3, "F", 2, None, "2024-01-06"],
    ]
    assert result.row_count == 3 and result.truncated is False
    json.dumps(result.rows, allow_nan=False)


@pytest.mark.parametrize(
    "sql",
    [
        "WITH f AS (SELECT * FROM patients WHERE sex = 'F') SELECT count(*) FROM f",
        "FROM patients SELECT id",
        "TABLE patients",
        "VALUES (1, 'a'), (2, 'b')",
        "DESCRIBE patients",
        "SUMMARIZE patients",
        "SHOW TABLES",
        "EXPLAIN SELECT * FROM patients",
        "EXPLAIN ANALYZE SELECT * FROM patients",
        "SELECT 1;",
        "-- a comment\nSELECT 1",
    ],
)
def test_read_only_forms_are_allowed(tables, sql) -> None:
    assert run_query(tables, sql, max_rows=100).row_count >= 1


def test_only_given_tables_are_visible(tables) -> None:
    shown = run_query(tables, "SHOW TABLES", max_rows=100)
    assert sorted(r[0] for r in shown.rows) == ["cardio_study__clinical_visits", "patients"]
    # A fresh database per query: nothing from an earlier query survives into the next.
    assert "does not exist" in refused({}, "SELECT * FROM patients")


def test_max_rows_truncates(tables) -> None:
    result = run_query(tables, "SELECT * FROM range(10)", max_rows=3)
    assert result.rows == [[0], [1], [2]] and result.truncated and result.row_count == 3
    exact = run_query(tables, "SELECT * FROM range(10)", max_rows=10)
    assert exact.row_count == 10 and not exact.truncated
    unlimited = run_query(tables, "SELECT * FROM range(5000)", max_rows=None)
    assert unlimited.row_count == 5000 and not unlimited.truncated


def test_capped_result_is_streamed_not_materialised() -> None:
    start = time.monotonic()
    result = run_query({}, "SELECT a.range FROM range(100000) a, range(100000) b", max_rows=5, timeout_s=20)
    assert result.row_count == 5 and result.truncated
    assert time.monotonic() - start < 10  # 10^10 rows would not fit in 20 s or in 512 MB


def test_result_bytes_are_capped() -> None:
    result = run_query({}, "SELECT repeat('x', 1000000) AS s FROM range(200)", max_rows=None, max_bytes=10**7)
    assert result.truncated and 1 <= result.row_count < 20


def test_values_are_json_safe() -> None:
    result = run_query(
        {},
        """
        SELECT DATE '2024-02-29' AS d, TIMESTAMP '2024-02-29 13:45:00.5' AS ts,
               TIMESTAMPTZ '2024-02-29 13:45:00+02' AS tstz, 'infinity'::TIMESTAMP AS inf,
               '2024-01-01 00:00:00.123456789'::TIMESTAMP_NS AS ns, TIME '08:30' AS t,
               12.30::DECIMAL(6, 2) AS dec, sum(x) AS huge, 'nan'::DOUBLE AS nan, 'inf'::DOUBLE AS pinf,
               '\\x00\\xff'::BLOB AS b, INTERVAL '1 month 2 days 3.5 seconds' AS iv,
               {'a': [1, 2], 'b': DATE '2024-01-01'} AS s, MAP {'k': 1} AS m,
               '00000000-0000-0000-0000-000000000001'::UUID AS u, NULL AS n
        FROM (VALUES (1), (2)) v(x)
        """,
        max_rows=10,
    )
    row = dict(zip(result.columns, result.rows[0], strict=True))
    assert row == {
        "d": "2024-02-29",
        "ts": "2024-02-29T13:45:00.500000",
        "tstz": "2024-02-29T11:45:00.000000+00:00",
        "inf": "infinity",
        "ns": "2024-01-01T00:00:00.123456789",
        "t": "08:30:00.000000",
        "dec": "12.30",
        "huge": 3,
        "nan": None,
        "pinf": None,
        "b": "AP8=",
        "iv": "P1M2DT3.5S",
        "s": {"a": [1, 2], "b": "2024-01-01"},
        "m": [["k", 1]],
        "u": "00000000-0000-0000-0000-000000000001",
        "n": None,
    }
    assert result.types[6] == "DECIMAL(6,2)" and result.types[7] == "HUGEINT"
    json.dumps(result.rows, allow_nan=False)


def test_every_duckdb_type_converts() -> None:
    result = run_query({}, "FROM test_all_types()", max_rows=None)
    assert result.row_count == 3
    json.dumps(result.rows, allow_nan=False)


# --- statements that are refused -----------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1) TO '/tmp/sanctum-out.csv'",
        "COPY patients FROM '/etc/passwd'",
        "ATTACH '/tmp/sanctum-x.db'",
        "ATTACH ':memory:' AS other",
        "DETACH memory",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "SET VARIABLE v = 1",
        "PRAGMA version",
        "PRAGMA enable_profiling",
        "CALL pragma_version()",
        "CREATE TABLE x AS SELECT 1",
        "CREATE TEMP VIEW v AS SELECT 1",
        "CREATE MACRO m() AS 1",
        "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 's')",
        "INSERT INTO patients VALUES (9, 'F', 1)",
        "UPDATE patients SET age = 0",
        "DELETE FROM patients",
        "DROP VIEW patients",
        "ALTER VIEW patients RENAME TO p",
        "EXPORT DATABASE '/tmp/sanctum-export'",
        "IMPORT DATABASE '/tmp/sanctum-export'",
        "USE system",
        "BEGIN TRANSACTION",
        "CHECKPOINT",
        "PREPARE p AS SELECT 1",
        "SELECT 1; SELECT 2",
        "SET enable_external_access = true; SELECT * FROM read_csv('/etc/passwd')",
        "SELECT 1; COPY (SELECT 1) TO '/tmp/sanctum-out.csv'",
        "EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/sanctum-out.csv'",
        "EXPLAIN ANALYZE INSERT INTO patients VALUES (9, 'F', 1)",
    ],
)
def test_non_read_statements_are_refused(tables, sql) -> None:
    assert refused(tables, sql) == READ_ONLY
    assert not Path("/tmp/sanctum-out.csv").exists()


@pytest.mark.parametrize("sql", ["", "   ", "-- only a comment"])
def test_empty_query(sql) -> None:
    assert refused({}, sql) == "the query is empty"


@pytest.fixture
def outside_files(tmp_path: Path) -> dict[str, str]:
    """Real files, so 'does not exist' is never the reason a read fails."""
    parquet = tmp_path / "x.parquet"
    pq.write_table(pa.table({"secret": ["S3CR3T-CELL"]}), parquet)
    csv = tmp_path / "x.csv"
    csv.write_text("secret\nS3CR3T-CELL\n")
    return {"parquet": str(parquet), "csv": str(csv), "dir": str(tmp_path)}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_csv_auto('/etc/passwd')",
        "SELECT * FROM read_csv(['/etc/passwd'])",
        "SELECT * FROM read_csv('{csv}')",
        "SELECT * FROM read_parquet('{parquet}')",
        "SELECT * FROM parquet_metadata('{parquet}')",
        "SELECT * FROM '{parquet}'",
        "FROM '{csv}'",
        "FROM '/etc/passwd'",
        "SELECT * FROM read_json('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM read_blob('/etc/passwd')",
        "SELECT * FROM sniff_csv('/etc/passwd')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM glob('{dir}/*')",
        "SELECT * FROM 'https://example.org/x.csv'",
        "SELECT * FROM read_csv('http://169.254.169.254/latest/meta-data')",
        "SELECT * FROM 's3://bucket/x.parquet'",
        "SELECT * FROM read_csv('/proc/self/environ')",
        "WITH x AS (FROM read_csv('/etc/passwd')) SELECT * FROM x",
        "SELECT (SELECT count(*) FROM read_csv('/etc/passwd'))",
        "SELECT * FROM query('SELECT * FROM read_csv(''/etc/passwd'')')",
        "SELECT * FROM query('COPY (SELECT 1) TO ''/tmp/sanctum-out.csv''')",
        "SELECT getenv('HOME')",
        "SELECT * FROM sqlite_scan('/tmp/x.db', 't')",
        "SELECT * FROM read_xlsx('/tmp/x.xlsx')",
        "SELECT * FROM enable_logging()",
    ],
)
def test_reads_outside_the_tables_are_refused(tables, outside_files, sql) -> None:
    message = refused(tables, sql.format(**outside_files))
    assert "S3CR3T-CELL" not in message and "root:" not in message
    assert any(
        reason in message
        for reason in (
            "disabled by configuration",
            "does not exist",
            "not in the catalog",
            "locked",
            "Parser",
        )
    ), message
    assert not Path("/tmp/sanctum-out.csv").exists()


def test_python_variables_are_not_tables(tables) -> None:
    other_project = pa.table({"secret": ["other project"]})  # bait for a Python replacement scan
    assert "does not exist" in refused(tables, "SELECT * FROM other_project")
    # DuckDB's Python client scans the calling frame for Arrow/DataFrame variables by default...
    plain = duckdb.connect(":memory:")
    assert plain.execute("SELECT * FROM other_project").fetchall() == [("other project",)]
    plain.close()
    # ...and the locked-down connection does not, even from the very frame holding the variable.
    with pytest.raises(duckdb.CatalogException):
        connect().execute("SELECT * FROM other_project")
    assert other_project.num_rows == 1


def test_unknown_table_and_column_and_syntax(tables) -> None:
    assert "Table with name visits does not exist" in refused(tables, "SELECT * FROM visits")
    assert "not found" in refused(tables, "SELECT height FROM patients")
    assert "syntax error" in refused(tables, "SELEC 1").lower()


def test_settings_reveal_no_paths(tables, tmp_path) -> None:
    rows = run_query(tables, "SELECT name, value FROM duckdb_settings()", max_rows=None).rows
    values = " ".join(str(v) for _, v in rows)
    for secret in {str(Path.home()), os.getcwd(), str(tmp_path), "/root"} - {"/"}:
        assert secret not in values
    assert "/nonexistent" in refused(tables, "SELECT * FROM duckdb_extensions()")


# --- the lock-down itself, with the statement check bypassed -------------------------------------


def test_hardening_settings_are_in_force() -> None:
    con = connect(memory_limit="100MB", threads=1, timeout_s=5)
    settings = settings_in_force(con)
    assert settings["enable_external_access"] == "false"
    assert settings["lock_configuration"] == "true"
    assert settings["autoinstall_known_extensions"] == "false"
    assert settings["autoload_known_extensions"] == "false"
    assert settings["allow_community_extensions"] == "false"
    assert settings["allow_unsigned_extensions"] == "false"
    assert settings["allow_persistent_secrets"] == "false"
    assert settings["allow_extension_repositories"] == "forbidden"
    assert settings["python_enable_replacements"] == "false"
    assert settings["temp_directory"] == ""
    assert settings["max_temp_directory_size"] == "0 bytes"
    assert settings["threads"] == "1"
    assert settings["max_execution_time"] == "5000"
    assert settings["memory_limit"].endswith("MiB") and float(settings["memory_limit"].split()[0]) < 100


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 42) TO '{out}'",
        "ATTACH '{db}'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "LOAD '{db}'",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "RESET lock_configuration",
        "SET memory_limit = '10GB'",
        "SET temp_directory = '{dir}'",
        "SET allowed_directories = ['/']",
        "SET python_enable_replacements = true",
        "EXPORT DATABASE '{dir}/export'",
        "SELECT * FROM read_csv('/etc/passwd')",
    ],
)
def test_duckdb_itself_refuses(tmp_path, sql) -> None:
    con = connect()
    out, db = tmp_path / "out.csv", tmp_path / "x.db"
    with pytest.raises(duckdb.Error):
        con.execute(sql.format(out=out, db=db, dir=tmp_path))
    assert not out.exists() and not db.exists() and not (tmp_path / "export").exists()
    assert settings_in_force(con)["enable_external_access"] == "false"


# --- resources --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT sum(range) FROM range(1000000000000)",
        "SELECT count(*) FROM range(1000000) a, range(1000000) b WHERE a.range + b.range = 7",
        "SELECT pg_sleep(30)",
    ],
)
def test_long_query_is_interrupted(sql) -> None:
    start = time.monotonic()
    assert refused({}, sql, timeout_s=0.5) == "query took longer than 0.5 s"
    assert time.monotonic() - start < 5


def test_memory_hungry_query_fails_cleanly(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # DuckDB's default temp directory is ".tmp" under the cwd
    message = refused({}, "SELECT list(range) FROM range(100000000)", memory_limit="64MB", timeout_s=30)
    assert message.startswith("query needs more memory than the limit of 64MB")
    assert "temporary directory" not in message  # DuckDB's advice does not apply here
    assert run_query({}, "SELECT 1", max_rows=1).rows == [[1]]  # and the process carries on
    assert list(tmp_path.iterdir()) == []  # nothing was spilled to disk


def test_bad_table_names_are_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="invalid SQL table name"):
        run_query({'x"; DROP': pa.table({"a": [1]})}, "SELECT 1", max_rows=1)


def test_errors_are_invalid_input() -> None:
    assert issubclass(QueryError, InvalidInput) and issubclass(QueryError, ValueError)
    assert issubclass(TableError, InvalidInput) and issubclass(TableError, ValueError)
    assert QueryError("x").status == 422 and TableError("x").code == "invalid_table"


# --- uploads ----------------------------------------------------------------------------------------


def test_good_csv() -> None:
    data = b"id,name,dob,weight,note\n1,Ann,1980-02-03,61.5,\n2,Bob,1975-12-01,,NA\n"
    table = read_table_upload(data, "people.csv")
    assert table.column_names == ["id", "name", "dob", "weight", "note"]
    assert schema_json(table) == [
        {"name": "id", "type": "int64", "nullable": True},
        {"name": "name", "type": "string", "nullable": True},
        {"name": "dob", "type": "date32[day]", "nullable": True},
        {"name": "weight", "type": "double", "nullable": True},
        {"name": "note", "type": "string", "nullable": True},  # all empty: typed as text
    ]
    assert table.column("weight").to_pylist() == [61.5, None]
    assert table.column("note").to_pylist() == [None, None]


def test_tsv_semicolons_bom_and_sniffing() -> None:
    assert read_table_upload(b"a\tb\n1\t2\n", "x.tsv").column_names == ["a", "b"]
    assert read_table_upload(b"a;b\n1;2\n", "x.csv").column_names == ["a", "b"]
    assert read_table_upload(b"\xef\xbb\xbfa,b\n1,2\n", "x.csv").column_names == ["a", "b"]
    assert read_table_upload(b"a|b\n1|2\n", "export.dat").column_names == ["a", "b"]
    assert read_table_upload(io.BytesIO(b'a,b\n1,"x,\ny"\n'), "x.csv").column("b").to_pylist() == ["x,\ny"]


def test_type_inference_sees_the_whole_file() -> None:
    data = b"code\n" + b"1\n" * 200_000 + b"A12\n"
    assert read_table_upload(data, "codes.csv").schema.field("code").type == pa.string()


def test_parquet_upload_drops_file_metadata() -> None:
    source = pa.table({"a": [1, 2], "b": ["x", None]}).replace_schema_metadata({"author": "Dr Who, MRN 123"})
    sink = io.BytesIO()
    pq.write_table(source, sink)
    table = read_table_upload(sink.getvalue(), "anything.bin")
    assert table.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": None}]
    assert table.schema.metadata is None


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (b"", "x.csv", "file is empty"),
        (b"\n\n  \n", "x.csv", "file is empty"),
        ("name\nJosé\n".encode("latin-1"), "x.csv", "not UTF-8"),
        ("name\nJosé\n".encode("utf-16"), "x.csv", "UTF-16"),
        (b"a,a\n1,2\n", "x.csv", "duplicate column name 'a'"),
        (b"Age,age\n1,2\n", "x.csv", "duplicate column name"),
        (b"a,,c\n1,2,3\n", "x.csv", "column 2 has an empty name"),
        (b'a,"b\x01"\n1,2\n', "x.csv", "control characters"),
        (b"a,b,c\n1,2,3\n4,5\n", "x.csv", "line 3 has 2 field(s) but the header has 3"),
        (b"a,b\n1,2\n4,5,SECRET\n", "x.csv", "line 3 has 3 field(s) but the header has 2"),
        (b"PK\x03\x04rest-of-a-zip", "sheet.xlsx", "ZIP archive"),
        (b"\x1f\x8b\x08\x00", "x.csv.gz", "gzip"),
        (bytes(range(256)) * 4, "blob.bin", "not a CSV or Parquet file"),
        (b"a,b\x00\n1,2\n", "x.dat", "NUL bytes"),
        (b"PAR1 this is not really parquet PAR1", "x.parquet", "not a readable Parquet file"),
    ],
)
def test_bad_uploads(data, filename, expected) -> None:
    with pytest.raises(TableError) as info:
        read_table_upload(data, filename)
    assert expected in info.value.message
    assert "SECRET" not in info.value.message and "José" not in info.value.message


def test_upload_limits() -> None:
    with pytest.raises(TableError, match="larger than the limit of 10 bytes"):
        read_table_upload(io.BytesIO(b"a,b\n1,2\n3,4\n"), "x.csv", max_bytes=10)
    with pytest.raises(TableError, match="3 rows, more than the limit of 2"):
        read_table_upload(b"a\n1\n2\n3\n", "x.csv", max_rows=2)
    assert read_table_upload(b"a,b\n", "x.csv").num_rows == 0  # a header alone is an empty table


def test_parquet_bytes_are_deterministic_and_round_trip() -> None:
    table = read_table_upload(b"id,v,d\n1,2.5,2024-01-01\n2,,2024-01-02\n", "x.csv")
    data = to_parquet_bytes(table)
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=1))
    assert to_parquet_bytes(rechunked) == data == to_parquet_bytes(from_parquet_bytes(data))
    assert from_parquet_bytes(data).equals(table)
    assert pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(0).compression == "ZSTD"
    with pytest.raises(TableError):
        from_parquet_bytes(data[:-10])


def test_sql_names() -> None:
    assert sql_name("clinical-visits") == "clinical_visits"
    assert sql_name("clinical-visits", "cardio-study") == "cardio_study__clinical_visits"
    assert sql_name("2024") == "2024"
    for bad in ("Clinical", "a--b", "-a", "a-", "a_b", "a b", 'a"b', "", "é"):
        with pytest.raises(TableError):
            sql_name(bad)
    with pytest.raises(TableError):
        sql_name("visits", "../other")


def test_sql_names_run_in_queries() -> None:
    tables = {
        sql_name("2024-visits"): pa.table({"n": [1]}),
        sql_name("select", "from-x"): pa.table({"n": [2]}),
    }
    result = run_query(
        tables, 'SELECT n FROM "2024_visits" UNION ALL SELECT n FROM "from_x__select"', max_rows=5
    )
    assert sorted(r[0] for r in result.rows) == [1, 2]
