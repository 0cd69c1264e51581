"""Envelope keys: master key → per-project key → per-dataset data key, each wrapped by the one above.

A wrapped key is AES-256-GCM under the key-encryption key, with the owner ("project:12",
"dataset:34") as associated data: a wrapped key copied into another row does not unwrap there, so
a database edit cannot point one dataset at another's key. Destroying every wrapped copy of a data
key (crypto-shredding) makes its blobs unreadable wherever they are copied.

Layout: version byte 0x01 ‖ 12-byte random nonce ‖ ciphertext of the 32-byte key ‖ 16-byte tag
(61 bytes). Random nonces are safe here: a key-encryption key wraps thousands of keys, not 2^32.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sanctum.store.stream import KEY_SIZE, IntegrityError

WRAP_VERSION = 1
NONCE_SIZE = 12
WRAPPED_SIZE = 1 + NONCE_SIZE + KEY_SIZE + 16
_AD_PREFIX = b"sanctum/keywrap/v1\x00"


def new_data_key() -> bytes:
    """A fresh 256-bit key (data key or project key: they differ only by what they wrap)."""
    return secrets.token_bytes(KEY_SIZE)


def _check(name: str, key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"{name} must be {KEY_SIZE} bytes, not {len(key)}")


def _ad(context: str) -> bytes:
    if not context:
        raise ValueError("a wrapped key needs its owner as context, e.g. 'dataset:34'")
    return _AD_PREFIX + context.encode("utf-8")


def wrap(kek: bytes, key: bytes, context: str) -> bytes:
    _check("key-encryption key", kek)
    _check("wrapped key", key)
    nonce = secrets.token_bytes(NONCE_SIZE)
    return bytes([WRAP_VERSION]) + nonce + AESGCM(kek).encrypt(nonce, key, _ad(context))


def unwrap(kek: bytes, wrapped: bytes, context: str) -> bytes:
    """The key, or IntegrityError if kek, context or the wrapped bytes are not the ones it was made with."""
    _check("key-encryption key", kek)
    if len(wrapped) != WRAPPED_SIZE or wrapped[0] != WRAP_VERSION:
        raise IntegrityError(f"wrapped key for {context!r} is malformed ({len(wrapped)} bytes)")
    nonce, body = wrapped[1 : 1 + NONCE_SIZE], wrapped[1 + NONCE_SIZE :]
    try:
        return AESGCM(kek).decrypt(nonce, body, _ad(context))
    except InvalidTag:
        raise IntegrityError(
            f"wrapped key for {context!r} does not unwrap: wrong key-encryption key, a key copied from "
            "another owner, or modified bytes"
        ) from None
