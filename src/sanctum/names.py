"""What counts as a valid name, e-mail address or label, in one place for API, CLI and web."""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from sanctum.errors import InvalidInput

PROJECT_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Single hyphens only: a local table "a-b" is SQL a_b and a shared one <project>__<dataset>, so a
# double hyphen could collide with a shared table's name; no leading or trailing hyphen either.
DATASET_NAME = re.compile(r"^[a-z0-9](?:-?[a-z0-9])*$")
PROJECT_NAME_HELP = "1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit"


def project_name(value: str) -> str:
    """Project names go into URLs and paths, so no separators, dots, spaces or control characters."""
    if not PROJECT_NAME.fullmatch(value):
        raise InvalidInput(f"invalid project name: use {PROJECT_NAME_HELP}", code="invalid_name")
    return value


def label(value: str, *, field: str, max_length: int = 200, allow_empty: bool = True) -> str:
    """Free text shown to people (titles, token names): no control characters, bounded length."""
    value = value.strip()
    if not value and not allow_empty:
        raise InvalidInput(f"{field} must not be empty")
    if len(value) > max_length:
        raise InvalidInput(f"{field} must be at most {max_length} characters")
    if any(ord(c) < 32 or ord(c) == 127 or 0x80 <= ord(c) < 0xA0 for c in value):
        raise InvalidInput(f"{field} must not contain control characters")
    if any(c in "/\\" for c in value) and field.endswith("name"):
        raise InvalidInput(f"{field} must not contain path separators")
    return value


def email(value: str) -> str:
    """Normalised (lowercased) address; syntax only, no DNS lookups (hospital networks are closed)."""
    try:
        result = validate_email(value.strip(), check_deliverability=False, globally_deliverable=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"invalid e-mail address: {exc}", code="invalid_email") from exc
    return result.normalized.lower()


def looks_like_email(value: str) -> bool:
    try:
        email(value)
    except InvalidInput:
        return False
    return True
