"""``sanctum dataset`` sharing and erasure, ``sanctum query``, and the project's data commands.

Erasure (``dataset shred``, ``project delete``) shows what will be destroyed and asks for the name
to be typed, unless ``--yes``; in ``--json`` mode it refuses without ``--yes``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.markup import escape
from rich.table import Table

from sanctum.cli.client import ProjectArg, _fail, _server, _show
from sanctum.cli.datasets import (
    SHARE_COLUMNS,
    DatasetArg,
    ShareIdArg,
    YesFlag,
    _n,
    _say,
    _size,
    dataset_app,
)
from sanctum.cli.instance import JsonFlag
from sanctum.cli.output import console, show
from sanctum.sdk import Client


@dataset_app.command("share")
def dataset_share(
    project: ProjectArg,
    dataset: DatasetArg,
    target: Annotated[str, typer.Argument(metavar="TARGET_PROJECT", help="the project to share with")],
    access: Annotated[str, typer.Option(help="read, or write (may add versions)")] = "read",
    as_json: JsonFlag = False,
) -> None:
    """Offer a dataset to another project, without copying it; that project's owners accept it."""
    with _server(as_json) as client:
        share = client.share_dataset(project, dataset, target, access=access)
    _show(
        share,
        as_json,
        message=f"offered {dataset} to {target} ({share.access}), share {share.id}; an "
        f"owner of {target} accepts it with: sanctum dataset accept {target} "
        f"{share.id}",
    )


@dataset_app.command("shares")
def dataset_shares(project: ProjectArg, as_json: JsonFlag = False) -> None:
    """Shares into and out of a project, in every state."""
    with _server(as_json) as client:
        shares = client.list_shares(project)
    _show(shares, as_json, columns=SHARE_COLUMNS, empty="no shares")


@dataset_app.command("accept")
def dataset_accept(project: ProjectArg, share_id: ShareIdArg, as_json: JsonFlag = False) -> None:
    """Accept a share offered to this project: the dataset appears here as <project>.<dataset>."""
    with _server(as_json) as client:
        share = client.accept_share(project, share_id)
    _show(
        share,
        as_json,
        message=f"accepted share {share.id}: {share.source_project}.{share.dataset} is now "
        f"available in {share.target_project} ({share.access})",
    )


@dataset_app.command("decline")
def dataset_decline(project: ProjectArg, share_id: ShareIdArg, as_json: JsonFlag = False) -> None:
    """Decline a share offered to this project."""
    with _server(as_json) as client:
        share = client.decline_share(project, share_id)
    _show(share, as_json, message=f"declined share {share.id} ({share.source_project}.{share.dataset})")


@dataset_app.command("revoke")
def dataset_revoke(project: ProjectArg, share_id: ShareIdArg, as_json: JsonFlag = False) -> None:
    """End a share (the offering project withdraws it, or the receiving one leaves it): at once."""
    with _server(as_json) as client:
        client.revoke_share(project, share_id)
    _show({"project": project, "revoked": share_id}, as_json, message=f"revoked share {share_id}")


# --------------------------------------------------------------------------- erasure


def _inventory(client: Client, project: str, dataset: str) -> dict[str, int]:
    """What a dataset holds, drafts included (their sizes are known only from their manifests)."""
    versions = client.list_versions(project, dataset, drafts=True)
    files = size = drafts = 0
    for v in versions:
        if v.state == "committed":
            files, size = files + v.file_count, size + v.total_size
        else:
            drafts += 1
            listed = client.list_files(project, dataset, v.number)
            files, size = files + len(listed), size + sum(f.size for f in listed)
    return {"versions": len(versions), "drafts": drafts, "files": files, "bytes": size}


def _confirm(what: str, name: str, as_json: bool) -> None:
    """The user types ``name``; anything else (or end of input) aborts with exit 1."""
    try:
        typed = typer.prompt(
            f"Type the {what} name ({name}) to confirm", default="", show_default=False, err=True
        )
    except click.exceptions.Abort:
        typed = None
    if typed is None or typed.strip() != name:
        _fail(
            f"aborted: that is not the {what} name {name!r}; nothing was destroyed",
            as_json=as_json,
            code="aborted",
        )


def _needs_yes(yes: bool, as_json: bool) -> None:
    if as_json and not yes:
        _fail("confirmation required: pass --yes", as_json=True, code="confirmation_required")


def _counts(inv: dict[str, int]) -> str:
    drafts = f" ({inv['drafts']} uncommitted)" if inv["drafts"] else ""
    exact = f" ({inv['bytes']} bytes)" if inv["bytes"] >= 1000 else ""
    versions, files = _n(inv["versions"], "version"), _n(inv["files"], "file")
    return f"{versions}{drafts}, {files}, {_size(inv['bytes'])}{exact}"


@dataset_app.command("shred")
def dataset_shred(
    project: ProjectArg, dataset: DatasetArg, yes: YesFlag = False, as_json: JsonFlag = False
) -> None:
    """Erase a dataset (GDPR Article 17) by destroying its key; asks for its name unless --yes.

    Every version, and every copy in backups, becomes unreadable. Data owners only."""
    _needs_yes(yes, as_json)
    with _server(as_json) as client:
        found = client.get_dataset(project, dataset)
        if found.access != "owner":
            _fail(
                f"{dataset} belongs to project {found.project}; only that project can shred it "
                "(to stop using it here, revoke the share)",
                as_json=as_json,
                code="not_owner",
            )
        inv = _inventory(client, project, dataset)
        shares = [
            s
            for s in client.list_shares(project)
            if s.dataset == dataset and s.source_project == project and s.state in ("pending", "accepted")
        ]
        if not yes:
            _say(
                f"This permanently destroys dataset [bold]{escape(dataset)}[/bold] in {escape(project)}: "
                f"{escape(_counts(inv))}."
            )
            if shares:
                _say(
                    f"Its {_n(len(shares), 'active share')} end too: "
                    f"{escape(', '.join(s.target_project for s in shares))}."
                )
            _say("Its key is destroyed, so no copy of the data can be read again.")
            _confirm("dataset", dataset, as_json)
        client.shred_dataset(project, dataset, confirm=dataset)
    _show(
        {"project": project, "dataset": dataset, "shredded": True, **inv, "shares_revoked": len(shares)},
        as_json,
        message=f"shredded {dataset}: {_counts(inv)} are unreadable from now on",
    )


def project_delete(project: ProjectArg, yes: YesFlag = False, as_json: JsonFlag = False) -> None:
    """Delete a project and crypto-shred all its data; asks for its name unless --yes.

    Data owners only."""
    _needs_yes(yes, as_json)
    with _server(as_json) as client:
        client.get_project(project)
        own = [d for d in client.list_datasets(project) if d.access == "owner"]
        totals = {"datasets": len(own), "versions": 0, "drafts": 0, "files": 0, "bytes": 0}
        for d in own:
            for key, value in _inventory(client, project, d.name).items():
                totals[key] += value
        if not yes:
            _say(
                f"This permanently deletes project [bold]{escape(project)}[/bold], its members and shares, "
                f"and destroys the keys of its {_n(len(own), 'dataset')}: {escape(_counts(totals))}."
            )
            _say("No copy of the data can be read again.")
            _confirm("project", project, as_json)
        client.delete_project(project, confirm=project)
    _show(
        {"project": project, "deleted": True, **totals},
        as_json,
        message=f"deleted project {project}: {_n(len(own), 'dataset')}, {_counts(totals)} are unreadable "
        "from now on",
    )


def project_settings(
    project: ProjectArg,
    query_row_limit: Annotated[int, typer.Option(min=1, help="rows a query returns to data scientists")],
    as_json: JsonFlag = False,
) -> None:
    """A project's data settings (data owners)."""
    with _server(as_json) as client:
        updated = client.update_project_settings(project, query_row_limit=query_row_limit)
    _show(
        updated,
        as_json,
        message=f"queries in {project} now return at most {updated.query_row_limit} rows to data scientists",
    )


# --------------------------------------------------------------------------- query


def _sql_text(sql: str | None, file: Path | None, as_json: bool) -> str:
    if (sql is None) == (file is None):
        _fail("give the SQL, or -f FILE", as_json=as_json, code="usage")
    if file is None:
        return sql or ""
    try:
        return sys.stdin.read() if str(file) == "-" else file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        _fail(f"cannot read {file}: {reason}", as_json=as_json, code="sql_file")


def _value(value: Any) -> str:
    return "NULL" if value is None else escape(str(value))


def query(
    project: ProjectArg,
    sql: Annotated[str | None, typer.Argument(help="one read-only SQL statement")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="read the SQL from this file ('-': stdin)")
    ] = None,
    max_rows: Annotated[int | None, typer.Option(min=1, help="return at most this many rows")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run one read-only SQL statement over the project's table datasets.

    Tables are named after datasets with _ for - (shared ones: <project>__<name>). Rows are capped
    by your role; the output says when the result was cut."""
    text = _sql_text(sql, file, as_json)
    with _server(as_json) as client:
        result = client.query(project, text, max_rows=max_rows)
    if as_json:
        show(result, as_json=True)
        return
    grid = Table()
    for name, kind in zip(result.columns, result.types, strict=True):
        grid.add_column(f"{escape(name)}\n[dim]{escape(kind.lower())}[/dim]")
    for row in result.rows:
        grid.add_row(*(_value(v) for v in row))
    console.print(grid)
    note = _n(result.row_count, "row")
    if result.truncated:
        note += f"; truncated to the row limit of {result.row_limit} (there are more rows)"
    _say(escape(note))


# --------------------------------------------------------------------------- wiring
