"""Password hashing (argon2id) and the password policy.

Verification of an unknown user runs against a dummy hash, so a login for an address that does
not exist costs the same time as a wrong password for one that does.
"""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
# argon2 hashes whatever it is given; an unbounded password is a denial-of-service lever.
MAX_LENGTH = 256
# zxcvbn's ranked list of leaked passwords: the top entries are what attackers try first.
COMMON_RANK_LIMIT = 30_000

_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory defaults


class WeakPasswordError(ValueError):
    """The password breaks the policy; the message says which rule, never echoes the password."""


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"][:COMMON_RANK_LIMIT])


def check_policy(password: str, *, email: str | None = None) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPasswordError(f"password must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPasswordError(f"password must be at most {MAX_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise WeakPasswordError("password must not contain control characters")
    lowered = password.lower()
    if lowered in _common_passwords() or len(set(lowered)) <= 3:
        raise WeakPasswordError("password is among the most common passwords; choose another")
    from zxcvbn import zxcvbn

    user_inputs = [email, email.split("@")[0]] if email else []
    if zxcvbn(password[:100], user_inputs=user_inputs)["score"] < 3:
        raise WeakPasswordError("password is too easy to guess; use a longer passphrase")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash("sanctum-dummy-password-for-timing")


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no hash (unknown user) does the same work, then False."""
    candidate = password[:MAX_LENGTH]
    try:
        return _hasher.verify(password_hash or _dummy_hash(), candidate) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
