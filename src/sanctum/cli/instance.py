"""Server-side commands: they act on a data dir directly (init, serve, demo, admin, audit verify)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from sanctum.cli.output import JsonOption, fail, show
from sanctum.config import ConfigError, Settings, load_settings

DataDirOption = Annotated[
    Path,
    typer.Option("--data-dir", "-d", envvar="SANCTUM_DATA_DIR", help="the instance's data folder"),
]


def read_password_file(path: Path) -> str:
    """Passwords come from files (never argv, which other users can read in ``ps``)."""
    try:
        text = path.read_text()
    except OSError as exc:
        fail(f"cannot read password file {path}: {exc.strerror}")
    return text.rstrip("\r\n")


def settings_for(data_dir: Path, **overrides: object) -> Settings:
    return load_settings(data_dir, **{k: v for k, v in overrides.items() if v is not None})


def initialise(settings: Settings) -> bool:
    """Create the data dir, master key and catalog. Idempotent; True when the key was created."""
    from sanctum.db.migrate import upgrade
    from sanctum.security.keys import create_master_key

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    created = False
    key = settings.resolved_master_key_file
    if not key.exists():
        create_master_key(key)
        created = True
    upgrade(settings.resolved_database_url)
    catalog = settings.data_dir / "sanctum.db"
    if settings.database_url is None and catalog.exists():
        os.chmod(catalog, 0o600)  # the embedded catalog is as private as the key beside it
    return created


def open_runtime(settings: Settings):  # noqa: ANN201 - Runtime, imported lazily to keep --help fast
    from sanctum.api.runtime import Runtime
    from sanctum.security.keys import KeyError_

    try:
        return Runtime.start(settings)
    except (ConfigError, KeyError_) as exc:
        fail(str(exc), code=2)


def guard_start(settings: Settings, as_json: bool = False) -> None:
    from sanctum.config import check_startable

    try:
        check_startable(settings)
    except ConfigError as exc:
        fail(str(exc), code=2, as_json=as_json, error_code="config")


def _show_init(settings: Settings, created: bool, as_json: bool) -> None:
    show(
        {
            "data_dir": str(settings.data_dir),
            "database": settings.resolved_database_url.split("@")[-1],
            "master_key": str(settings.resolved_master_key_file),
            "master_key_created": created,
        },
        as_json=as_json,
        message=f"initialised {settings.data_dir}" + (" (new master key)" if created else ""),
    )


JsonFlag = Annotated[bool, JsonOption]
