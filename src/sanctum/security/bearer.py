"""Bearer secrets: ``snt_`` API tokens, web sessions, recovery codes. Stored only as SHA-256."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

TOKEN_PREFIX = "snt_"  # noqa: S105 - a public prefix, not a secret
SESSION_PREFIX = "sns_"
PENDING_PREFIX = "snp_"


def new_secret(prefix: str = TOKEN_PREFIX) -> str:
    """A 256-bit random secret with a recognisable prefix (so secret scanners can find leaks)."""
    return prefix + base64.b32encode(secrets.token_bytes(32)).decode().rstrip("=").lower()


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """Enough of a token to recognise it in a list, far too little to use it."""
    return secret[:10]


def new_recovery_code() -> str:
    """80 random bits as four groups of base32, easy to type from paper."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def normalise_recovery_code(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def recovery_digest(code: str) -> str:
    return digest("recovery:" + normalise_recovery_code(code))


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
