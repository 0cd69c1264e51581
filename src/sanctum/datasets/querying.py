"""A project's SQL over its tables: which tables, decrypted how, capped for whom."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pyarrow as pa
from sqlalchemy.orm import Session

from sanctum.access.permissions import Role
from sanctum.datasets import catalog, tables
from sanctum.datasets.catalog import Kind
from sanctum.datasets.keyring import Keyring
from sanctum.datasets.query import QueryResult, run_query
from sanctum.projects.service import ProjectContext
from sanctum.store import BlobStore

if TYPE_CHECKING:
    from sanctum.deid.table_policy import TablePolicy

# Owners may download anyway; their cap only protects the server's memory.
OWNER_ROW_LIMIT = 100_000


def row_limit(ctx: ProjectContext, requested: int | None) -> int:
    limit = OWNER_ROW_LIMIT if ctx.role is Role.DATA_OWNER else ctx.project.query_row_limit
    return min(limit, requested) if requested else limit


def referenced_tables(
    session: Session, ctx: ProjectContext, keyring: Keyring, store: BlobStore, sql: str
) -> dict[str, pa.Table]:
    """Decrypt the newest committed version of each table the SQL names, and only those."""
    words = set(re.findall(r"[a-z0-9_]+", sql.lower()))
    refs = [r for r in catalog.list_for(session, ctx) if r.dataset.kind == Kind.TABLE]
    wanted = {}
    for ref in refs:
        name = tables.sql_name(ref.dataset.name, ref.owner.name if ref.share else None)
        if name in words:
            wanted[name] = ref
    latest = catalog.latest_versions(session, [r.dataset.id for r in wanted.values()])
    loaded: dict[str, pa.Table] = {}
    for name, ref in wanted.items():
        version = latest.get(ref.dataset.id)
        if version is None:
            continue
        (entry,) = catalog.files(session, version)
        key = keyring.dataset_key(session, ref.dataset)
        table = tables.from_parquet_bytes(b"".join(store.open_range(entry.blob_id, key)))
        loaded[name] = role_view(session, ref.dataset.id, table, ctx.role)
    return loaded


def table_policy(session: Session, dataset_id: int) -> TablePolicy | None:
    """The column policy a table dataset was ingested under, if any."""
    from sanctum.deid.table_policy import load_policy  # deid and ingest build on datasets, not
    from sanctum.ingest.models import DatasetPolicy  # the other way round: imported when needed

    stored = session.get(DatasetPolicy, dataset_id)
    return load_policy(stored.policy) if stored is not None else None


def role_view(session: Session, dataset_id: int, table: pa.Table, role: Role) -> pa.Table:
    """The table as ``role`` may see it under the dataset's column policy (its ``views``).

    Why here and in job staging: these are the two ways a member reads a table's rows inside the
    platform; a Scientist whose view generalises birth dates to years must get years from both.
    """
    from sanctum.deid.tabular import view_for_role

    policy = table_policy(session, dataset_id)
    return table if policy is None else view_for_role(table, policy, role.value)


def run(
    session: Session,
    ctx: ProjectContext,
    keyring: Keyring,
    store: BlobStore,
    sql: str,
    requested_rows: int | None,
) -> tuple[QueryResult, int, list[str]]:
    limit = row_limit(ctx, requested_rows)
    loaded = referenced_tables(session, ctx, keyring, store, sql)
    return run_query(loaded, sql, max_rows=limit), limit, sorted(loaded)
