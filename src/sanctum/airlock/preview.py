"""What a reviewer sees of a file without downloading it: the first rows of a small table, or the
start of a small text file, beside the automatic checks' verdict.

Reviewers (output checkers, data owners) must see an output to judge it, but they hold no
``data:download``: the preview shows a bounded part on the platform (at most ``preview_rows`` rows
or 64 KiB of text, of files up to ``preview_max_bytes``), and every preview is audited.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from sqlalchemy.orm import Session

from sanctum.airlock import content, sniff
from sanctum.airlock.models import ExportFile, ExportRequest
from sanctum.airlock.rules import export_rules
from sanctum.datasets.keyring import Keyring
from sanctum.projects.service import ProjectContext
from sanctum.schemas.airlock import ExportPreview, Finding
from sanctum.store import BlobStore

TEXT_PREVIEW = 64 * 1024


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.date | dt.datetime | dt.time | decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def of(
    session: Session,
    ctx: ProjectContext,
    keyring: Keyring,
    store: BlobStore,
    request: ExportRequest,
    file: ExportFile,
) -> ExportPreview:
    del request  # visibility was settled when the request was loaded
    rules = export_rules(session, ctx.project)
    shown = ExportPreview(
        name=file.name,
        check_verdict=file.check_verdict,
        findings=[Finding(**f) for f in file.check_reasons],
        kind="none",
        row_count=file.row_count,
    )
    if file.size > rules.preview_max_bytes:
        return shown
    data = content.read_all(store, content.source(session, keyring, file))
    kind = sniff.kind_of(file.path, data)
    if kind.claimed in sniff.TABLE_KINDS and kind.consistent:
        from sanctum.airlock.table_checks import read_table
        from sanctum.datasets.tables import TableError

        try:
            table = read_table(data, file.path)
        except TableError:
            return shown
        head = table.slice(0, rules.preview_rows).to_pylist()
        shown.kind, shown.columns = "table", list(table.column_names)
        shown.rows = [[_cell(row[c]) for c in table.column_names] for row in head]
        shown.row_count, shown.truncated = table.num_rows, table.num_rows > rules.preview_rows
    elif kind.found == "text" and kind.claimed in sniff.TEXT_KINDS:
        shown.kind = "text"
        shown.text = data[:TEXT_PREVIEW].decode("utf-8", "replace")
        shown.truncated = len(data) > TEXT_PREVIEW
    return shown
