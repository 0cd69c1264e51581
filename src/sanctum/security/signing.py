"""Ed25519 signatures over canonical JSON: how a researcher vouches for a job, and a node for itself.

Why Ed25519 and RFC 8785: a signature must cover exactly the bytes every verifier sees, on the
researcher's laptop, the server and a Slurm node alike. JSON Canonicalization (RFC 8785) gives one
byte string for one JSON value in any language, and Ed25519 keys are small, fast and have no
parameters to get wrong. Private keys never reach the server; it stores public keys only.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sanctum.errors import InvalidInput

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def canonical(value: Any) -> bytes:
    """The RFC 8785 bytes of a JSON value; floats outside IEEE-754's exact range are refused."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInput(f"manifest is not canonical JSON: {exc}", code="invalid_manifest") from exc


def fingerprint(public_key: bytes) -> str:
    """A short, stable name for a public key, shown to people and stored beside the key."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(public_key).digest()).decode().rstrip("=")


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput("the signing key is not an Ed25519 key", code="invalid_key")
    return key


def public_key_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def encode_public_key(raw: bytes) -> str:
    """The text form users paste and the API carries: ``ed25519:<base64>``."""
    return "ed25519:" + base64.b64encode(raw).decode()


def decode_public_key(text: str) -> bytes:
    scheme, _, body = text.strip().partition(":")
    if scheme != "ed25519" or not body:
        raise InvalidInput("a public key looks like ed25519:<base64>", code="invalid_key")
    try:
        raw = base64.b64decode(body, validate=True)
    except ValueError:
        raise InvalidInput("the public key is not valid base64", code="invalid_key") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise InvalidInput("an Ed25519 public key is 32 bytes", code="invalid_key")
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode()


def decode_signature(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise InvalidInput("the signature is not valid base64", code="invalid_signature") from None
    if len(raw) != SIGNATURE_BYTES:
        raise InvalidInput("an Ed25519 signature is 64 bytes", code="invalid_signature")
    return raw


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
