"""Printing results for people (rich tables) or scripts (``--json``), and failing with one line."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

JsonOption = typer.Option("--json", help="print machine-readable JSON")


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(_plain(value), indent=2, default=str) + "\n")


def table(
    rows: Sequence[BaseModel | dict[str, Any]], columns: Sequence[str], *, title: str | None = None
) -> None:
    grid = Table(title=title)
    for column in columns:
        grid.add_column(column)
    for row in rows:
        data = _plain(row)
        grid.add_row(*("" if data.get(c) is None else str(data.get(c)) for c in columns))
    console.print(grid)


def show(
    value: Any, *, as_json: bool, columns: Sequence[str] | None = None, message: str | None = None
) -> None:
    """One way out for every command: JSON for scripts, a table or a line for people."""
    if as_json:
        emit_json(value)
        return
    if message:
        console.print(message)
    if columns is not None:
        rows = value if isinstance(value, list) else [value]
        table(rows, columns)


def fail(message: str, *, code: int = 1, as_json: bool = False, error_code: str = "error") -> NoReturn:
    if as_json:
        emit_json({"error": {"code": error_code, "message": message}})
    else:
        # One line however long (soft_wrap), and server text is never read as rich markup.
        err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
