"""Where ``sanctum login`` keeps its token, and how a client finds its server and credential.

The environment wins (``SANCTUM_URL`` / ``SANCTUM_TOKEN``, for scripts and CI); otherwise the
credentials file written by ``sanctum login``: ``credentials.json`` in ``$SANCTUM_CONFIG_DIR``, else
``$XDG_CONFIG_HOME/sanctum``, else ``~/.config/sanctum``. The file is created with mode 0600 from its
first byte in a 0700 directory, and is refused when others can read it. A stored token is only
ever sent to the URL it was issued by.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sanctum.sdk.errors import SanctumConfigError

FILE_NAME = "credentials.json"
URL_ENV = "SANCTUM_URL"
TOKEN_ENV = "SANCTUM_TOKEN"  # noqa: S105 - the variable's name, not a secret
DIR_ENV = "SANCTUM_CONFIG_DIR"


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str
    expires_at: str | None = None  # ISO 8601
    email: str | None = None

    @property
    def expired(self) -> bool:
        if not self.expires_at:
            return False
        when = datetime.fromisoformat(self.expires_at)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)) <= datetime.now(UTC)


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(DIR_ENV):
        return Path(env[DIR_ENV]).expanduser()
    xdg = env.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"  # the XDG spec ignores relative
    return base / "sanctum"


def credentials_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / FILE_NAME


def save(creds: Credentials, env: Mapping[str, str] | None = None) -> Path:
    """Write atomically: a new 0600 file (never briefly readable by others) renamed over the old."""
    directory = config_dir(env)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(directory.stat().st_mode) & 0o077:
        os.chmod(directory, 0o700)
    path = directory / FILE_NAME
    tmp = directory / f".{FILE_NAME}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(creds), handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load(env: Mapping[str, str] | None = None) -> Credentials | None:
    path = credentials_path(env)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise SanctumConfigError(
            f"{path} has mode {mode:o} and others can read it; run 'chmod 600 {path}' or log in again",
            code="unsafe_credentials",
        )
    try:
        data = json.loads(path.read_text())
        creds = Credentials(
            url=str(data["url"]),
            token=str(data["token"]),
            expires_at=data.get("expires_at"),
            email=data.get("email"),
        )
        _ = creds.expired  # a malformed date is a damaged file, said here rather than later
        return creds
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SanctumConfigError(
            f"cannot read {path} ({exc}); run 'sanctum login' again", code="bad_credentials_file"
        ) from exc


def delete(env: Mapping[str, str] | None = None) -> bool:
    path = credentials_path(env)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def resolve(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The (url, token) a client should use, or a one-line ``SanctumConfigError`` saying what to do."""
    env = os.environ if env is None else env
    env_url, env_token = env.get(URL_ENV, "").rstrip("/"), env.get(TOKEN_ENV, "")
    if env_url and env_token:
        return env_url, env_token
    stored = load(env)
    url = env_url or (stored.url if stored else "")
    if not url:
        raise SanctumConfigError(
            f"not logged in: run 'sanctum login URL' (or set {URL_ENV} and {TOKEN_ENV})", code="not_logged_in"
        )
    if env_token:
        return url, env_token
    if stored is None or stored.url.rstrip("/") != url:
        raise SanctumConfigError(
            f"not logged in to {url}: run 'sanctum login {url}' (or set {TOKEN_ENV})", code="not_logged_in"
        )
    if stored.expired:
        raise SanctumConfigError(
            f"your login to {url} expired at {stored.expires_at}; run 'sanctum login {url}'",
            code="login_expired",
        )
    return url, stored.token
