"""The researcher's job-signing key, kept on their own machine.

Why here and not on the server: a signature proves the researcher approved exactly this code on
exactly these inputs only if nobody else can make one. The private key is created locally with
mode 0600 from its first byte, in the 0700 Sanctum config directory, and is never uploaded; the
server learns only the public half (``sanctum key create`` registers it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sanctum.sdk.credentials import config_dir
from sanctum.sdk.errors import SanctumConfigError
from sanctum.security import signing

KEY_FILE = "signing-key.pem"


def key_path(directory: Path | None = None) -> Path:
    return (directory or config_dir()) / KEY_FILE


def create(path: Path, *, overwrite: bool = False) -> Ed25519PrivateKey:
    """Make a new key pair and write the private key with mode 0600 (refuses to overwrite)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = signing.new_private_key()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise SanctumConfigError(f"{path} already exists; use --force to replace it") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(signing.private_key_pem(key))
    os.chmod(path, 0o600)
    return key


def load(path: Path) -> Ed25519PrivateKey:
    """The private key; refused when others can read it (it may already be compromised)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SanctumConfigError(f"no signing key at {path}; run `sanctum key create`") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SanctumConfigError(f"{path} is readable by others; chmod 600 it, or create a new key")
    return signing.load_private_key(path.read_bytes())
