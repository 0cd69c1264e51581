"""Settings for one Sanctum instance.

Read from ``<data dir>/sanctum.toml`` (or the file named by ``SANCTUM_CONFIG``) and overridden by
``SANCTUM_*`` environment variables, so a laptop needs no file at all and a cluster keeps its
settings in one reviewed place.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class TwoFactorPolicy(StrEnum):
    """Who must have TOTP enrolled before they may do anything but enrol."""

    ALL = "all"
    OWNERS = "owners"  # data owners (in any project) and platform admins
    OFF = "off"


class ConfigError(Exception):
    """A setting that makes it unsafe to start; the message is one line for the operator."""


_toml_override: ContextVar[Path | None] = ContextVar("sanctum_toml_override", default=None)


def _config_file() -> Path | None:
    explicit = os.environ.get("SANCTUM_CONFIG")
    if explicit:
        return Path(explicit)
    override = _toml_override.get()
    if override is not None:
        return override
    data_dir = os.environ.get("SANCTUM_DATA_DIR")
    if data_dir:
        return Path(data_dir) / "sanctum.toml"
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SANCTUM_", extra="ignore")

    data_dir: Path = Path("./sanctum-data")
    database_url: str | None = None
    master_key_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    require_2fa: TwoFactorPolicy = TwoFactorPolicy.OWNERS
    # Login throttling: after this many consecutive failures an account is locked, and each further
    # failure doubles the lock, up to the maximum.
    login_max_failures: int = Field(default=5, ge=1)
    login_lock_base_seconds: int = Field(default=30, ge=1)
    login_lock_max_seconds: int = Field(default=3600, ge=1)
    login_token_hours: int = Field(default=12, ge=1, le=24 * 7)
    web_session_hours: int = Field(default=8, ge=1, le=24 * 7)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(default=100 * 1024**3, ge=1024)
    max_table_bytes: int = Field(default=1024**3, ge=1024)
    workers: int = Field(default=1, ge=1, le=64)
    # Jobs: the server runs queued local jobs itself, this many at a time.
    job_runner: bool = True
    job_slots: int = Field(default=1, ge=1, le=64)
    max_bundle_bytes: int = Field(default=50 * 1024**2, ge=1024)
    sandbox_uid: int = Field(default=65534, ge=1)
    # Slurm executor (the SecureHPC workflow): off unless a partition is set.
    slurm_partition: str | None = None
    slurm_conf: Path | None = None
    slurm_spool_dir: Path | None = None
    slurm_node_dir: Path | None = None
    public_url: str | None = None
    # Ingest: files are de-identified in a pool of this many processes (default: one per core), or
    # on Dask when a session asks for it: this scheduler, else a LocalCluster on this host. The
    # client never names a scheduler: identifying data travels to it (docs/ingest.md).
    ingest_workers: int | None = Field(default=None, ge=1, le=512)
    ingest_max_file_bytes: int = Field(default=512 * 1024**2, ge=1024)
    ingest_max_batch_bytes: int = Field(default=256 * 1024**2, ge=1024)
    ingest_max_ratio: int = Field(default=200, ge=2)  # uncompressed/compressed, per archive entry
    dask_scheduler: str | None = None
    # Data management plans: where this server's local executor runs (ISO 3166-1 alpha-2, e.g. "NL",
    # or an ISO 3166-2 subdivision such as "DE-BY"), checked against each plan's allowed locations;
    # and how often the retention lifecycle runs in the server (0: only 'sanctum lifecycle run').
    location: str = Field(default="", max_length=64, pattern=r"^([A-Za-z]{2}(-[A-Za-z0-9]{1,3})?)?$")
    lifecycle_interval_hours: float = Field(default=24.0, ge=0)
    # DICOM receiver (docs/dicom-receiver.md): a Storage SCP the server starts when a port is set
    # ('sanctum dicom listen' runs it alone). Off the loopback it needs TLS, unless an administrator
    # accepts plaintext DICOM on a network segment they trust (dicom_allow_plaintext).
    dicom_port: int | None = Field(default=None, ge=1, le=65535)
    dicom_host: str | None = None  # default: the web server's address (host)
    dicom_ae_title: str = Field(default="SANCTUM", max_length=16)
    dicom_tls_cert: Path | None = None
    dicom_tls_key: Path | None = None
    dicom_tls_ca: Path | None = None  # when set, senders must present a certificate it signed
    dicom_allow_plaintext: bool = False

    @field_validator(
        "data_dir",
        "master_key_file",
        "tls_certfile",
        "tls_keyfile",
        "slurm_conf",
        "slurm_spool_dir",
        "slurm_node_dir",
        "dicom_tls_cert",
        "dicom_tls_key",
        "dicom_tls_ca",
        mode="after",
    )
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None and path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        """The embedded default is SQLite inside the data dir (WAL mode is set on connect)."""
        return self.database_url or f"sqlite:///{self.data_dir / 'sanctum.db'}"

    @property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_certfile is not None and self.tls_keyfile is not None


def load_settings(data_dir: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings for a data dir: explicit ``overrides``, then ``SANCTUM_*``, then ``sanctum.toml``."""
    if data_dir is None:
        return Settings(**overrides)
    path = Path(data_dir).expanduser().resolve()
    token = _toml_override.set(path / "sanctum.toml")
    try:
        return Settings(data_dir=path, **overrides)
    finally:
        _toml_override.reset(token)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_startable(settings: Settings) -> None:
    """Refuse to serve in a configuration that would expose data; raise with a one-line reason."""
    key = settings.resolved_master_key_file
    if not key.is_file():
        raise ConfigError(f"master key {key} is missing; run 'sanctum init --data-dir {settings.data_dir}'")
    mode = stat.S_IMODE(key.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"master key {key} has mode {mode:o}; it must be readable by its owner only (0600)")
    if not is_loopback(settings.host) and not settings.tls_enabled:
        raise ConfigError(
            f"refusing to listen on {settings.host} without TLS; set tls_certfile and tls_keyfile "
            "or bind to 127.0.0.1"
        )
    if settings.tls_enabled:
        for path in (settings.tls_certfile, settings.tls_keyfile):
            if path is not None and not path.is_file():
                raise ConfigError(f"TLS file {path} does not exist")
