"""SQL over a project's tables (and tables shared into it), in the DuckDB sandbox."""

from __future__ import annotations

from fastapi import APIRouter

from sanctum.api.deps import DataQuerier, DbSession, RuntimeDep, record_outside, writes_in_own_sessions
from sanctum.schemas.datasets import QueryRequest, QueryResponse

router = APIRouter(prefix="/api/v1/projects/{project}", tags=["query"])


@router.post("/query")
@writes_in_own_sessions
def query(body: QueryRequest, ctx: DataQuerier, db: DbSession, runtime: RuntimeDep) -> QueryResponse:
    """One read-only statement; tables are named after datasets (``clinical-visits`` →
    ``clinical_visits``, shared ones ``<project>__<dataset>``). Rows are capped by role."""
    # DuckDB and pyarrow load on the first query: a server that only moves files stays small.
    from sanctum.datasets import querying
    from sanctum.datasets.query import QueryError

    try:
        result, limit, used = querying.run(db, ctx, runtime.keyring, runtime.store, body.sql, body.max_rows)
    except QueryError as exc:
        record_outside(
            runtime,
            ctx,
            "dataset.query",
            outcome="failed",
            details={"sql": body.sql[:2000], "error": exc.message[:500]},
        )
        raise
    record_outside(
        runtime,
        ctx,
        "dataset.query",
        details={
            "sql": body.sql[:2000],
            "tables": used,
            "rows": result.row_count,
            "truncated": result.truncated,
        },
    )
    return QueryResponse(
        columns=result.columns,
        types=result.types,
        rows=result.rows,
        row_count=result.row_count,
        truncated=result.truncated,
        row_limit=limit,
    )
