"""Docs that must stay true: the role table, the settings, the README's two commands."""

from __future__ import annotations

import re
from pathlib import Path

from sanctum.access.permissions import PROJECT_PERMISSIONS, ROLE_PERMISSIONS, Role
from sanctum.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def _table_rows(text: str, first_cell: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 1 and re.fullmatch(first_cell, cells[0]):
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_security_model_role_table_matches_the_policy() -> None:
    text = (ROOT / "docs/security-model.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| permission |"))
    roles = [c.strip() for c in header.strip().strip("|").split("|")][1:]
    assert roles == [r.value for r in Role]
    rows = _table_rows(text, r"`[a-z:]+`")
    documented = {
        p: row for p, row in rows.items() if ":" in p and p in {x.value for x in PROJECT_PERMISSIONS}
    }
    assert set(documented) == {p.value for p in PROJECT_PERMISSIONS}
    for permission, cells in documented.items():
        for role, cell in zip(roles, cells, strict=True):
            assert (cell == "yes") == (permission in {p.value for p in ROLE_PERMISSIONS[Role(role)]}), (
                permission,
                role,
            )


def test_every_setting_is_documented_for_administrators() -> None:
    text = (ROOT / "docs/administrator.md").read_text()
    for name in Settings.model_fields:
        assert f"`{name}`" in text, f"setting {name} is not in docs/administrator.md"


def test_readme_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
    for target in ("demo:", "test:"):
        assert target in (ROOT / "Makefile").read_text()


def test_docs_links_resolve() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for link in re.findall(r"\]\(([^)#]+)\)", doc.read_text()):
            if "://" in link:
                continue
            assert (doc.parent / link).exists(), f"{doc.name} links to missing {link}"


def _commands(group, prefix: str) -> list[str]:
    names = []
    for name, command in sorted(group.commands.items()):
        full = f"{prefix} {name}"
        if hasattr(command, "commands"):  # a group (typer ships its own click)
            names += _commands(command, full)
        else:
            names.append(full)
    return names


def test_every_cli_command_is_documented() -> None:
    import typer

    from sanctum.cli.main import app

    docs = "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    commands = _commands(typer.main.get_command(app), "sanctum")
    assert len(commands) >= 20
    missing = [c for c in commands if c not in docs]
    assert missing == [], f"CLI commands not in docs/: {missing}"
