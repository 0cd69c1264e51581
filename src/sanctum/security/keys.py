"""The instance master key and keys derived from it.

The master key is 32 random bytes in a file only its owner can read. Purpose keys are derived
with HKDF so that each use (TOTP secrets today, project keys later) has its own key and a leak of
one derived key says nothing about another.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32


class KeyError_(Exception):
    """The master key file is missing, unreadable, malformed or too open."""


def create_master_key(path: Path) -> None:
    """Write a new key with mode 0600 from the first byte (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES).hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def load_master_key(path: Path) -> bytes:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text().strip()
    except OSError as exc:
        raise KeyError_(f"cannot read master key {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise KeyError_(f"master key {path} has mode {mode:o}; it must be 0600")
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise KeyError_(f"master key {path} is not hex") from exc
    if len(key) != KEY_BYTES:
        raise KeyError_(f"master key {path} must hold {KEY_BYTES} bytes")
    return key


def derive_key(master: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode()).derive(master)


class SecretBox:
    """AES-256-GCM for small secrets in the catalog, bound to a purpose and a row (associated data)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        return self._aead.decrypt(sealed[:12], sealed[12:], context.encode())
