"""Stage a table input as the signer's role sees it, on the server or on a Slurm node.

Why one function for both executors: a Scientist whose view drops the MRN or generalises birth dates
to years must get the same rows and columns from ``/data`` whichever executor runs the job, and
from SQL (``sanctum.datasets.querying.role_view``). The node agent imports this only when a view
applies: it keeps its start-up free of pyarrow and pydantic for jobs on plain files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Union

from sanctum.store import LocalBlobStore

if TYPE_CHECKING:
    from sanctum.deid.table_policy import TablePolicy

#: A policy as the server holds it (parsed) or as a node receives it in the job's plan (JSON).
PolicyLike = Union["TablePolicy", str, dict[str, object]]


def _parsed(policy: PolicyLike) -> TablePolicy:
    from sanctum.deid.table_policy import TablePolicy, load_policy

    return policy if isinstance(policy, TablePolicy) else load_policy(policy)


def write_view(
    store: LocalBlobStore, blob_id: str, key: bytes, path: Path, policy: PolicyLike, role: str
) -> None:
    """Decrypt a stored table, apply ``role``'s view under ``policy`` and write it as Parquet.

    The full table exists only in this process's memory; the file written holds the view alone.
    """
    import pyarrow.parquet as pq

    from sanctum.datasets.tables import from_parquet_bytes
    from sanctum.deid.tabular import view_for_role

    table = from_parquet_bytes(b"".join(store.open_range(blob_id, key)))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pq.write_table(view_for_role(table, _parsed(policy), role), path)


def has_view(policy: PolicyLike, role: str) -> bool:
    """Whether ``role`` sees less than the stored table under ``policy``."""
    return bool(_parsed(policy).views.get(role))
