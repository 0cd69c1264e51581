"""The schema comes from Alembic migrations, and they match the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from sanctum.db.migrate import current_head
from sanctum.db.models import Base


def test_migrated_schema_matches_models(runtime) -> None:
    with runtime.db.engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_revision() == current_head()
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], diff


def test_sqlite_runs_in_wal_mode_with_foreign_keys(runtime, db_kind) -> None:
    if db_kind != "sqlite":
        return
    with runtime.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
