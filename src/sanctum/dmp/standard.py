"""Validation of a DMP file against the RDA DMP Common Standard, v1.1 or v1.2.

Why ``madmpy`` rather than a transcribed JSON Schema: it is a maintained PyPI package that ships
pydantic models of both versions of the standard (RDA-DMP-Common/RDA-DMP-Common-Standard, the
``maDMP-schema-1.1.json`` and ``maDMP-schema-1.2.json`` schemas): required fields, the controlled
vocabularies (``yes``/``no``/``unknown``, ``open``/``shared``/``closed``, ISO 639-3 languages,
ISO 3166-1 alpha-2 countries, ISO 4217 currencies) and ISO 8601 dates. We validate in pydantic's
*strict* mode, so a JSON string is never coerced into a number or a boolean (the schema's types
hold: ``"byte_size": "12"`` and ``"is_reused": "yes"`` are refused), and we apply the two root
rules the models leave to their caller: a top-level ``dmp`` object, and in 1.1 nothing beside it.
madmpy is stricter than the schema in one way: identifiers of a known type (DOI, ORCID, ROR,
handle, ARK, URL) must be well formed. ``tests/test_dmp_standard.py`` pins this behaviour.

madmpy prints a line when a version's models are first imported; it is swallowed here so that
``--json`` output stays clean.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from pydantic import ValidationError

VERSIONS = ("1.1", "1.2")
LATEST = "1.2"
MAX_ERRORS = 50
_SCHEMA_HINTS = {"1.1": ("/1.1", "-1.1"), "1.2": ("/1.2", "-1.2")}


@dataclass(frozen=True)
class Problem:
    """One reason a document is not a valid DMP: where (a JSON path) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Checked:
    """A document that follows the standard, and the version it was checked against."""

    standard: str
    document: dict[str, Any]

    @property
    def dmp(self) -> dict[str, Any]:
        return self.document["dmp"]


class NotAStandardDmp(Exception):
    """The document does not follow the standard; ``problems`` says where and why."""

    def __init__(self, standard: str, problems: list[Problem]) -> None:
        self.standard = standard
        self.problems = problems[:MAX_ERRORS]
        shown = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(
            f"the document does not follow the RDA DMP Common Standard {standard}: {shown}{more}"
        )


@functools.cache
def _models(standard: str) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return import_module(f"madmpy.v{standard.replace('.', '_')}.dmp")


def _path(loc: tuple[int | str, ...]) -> str:
    text = "dmp"
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _shorten(message: str) -> str:
    """A list of every ISO code is not a useful message; say which list instead."""
    if message.startswith("Input should be 'AD', 'AE'"):
        return "Input should be an ISO 3166-1 alpha-2 country code in capitals (e.g. 'NL')"
    if message.startswith("Input should be 'aar'"):
        return "Input should be an ISO 639-3 language code (e.g. 'eng')"
    if message.startswith("Input should be 'AED'"):
        return "Input should be an ISO 4217 currency code (e.g. 'EUR')"
    return message[:300]


def _declared(document: dict[str, Any]) -> str | None:
    """The version a 1.2 document names in its top-level ``$schema`` (1.1 allows no such key)."""
    schema = document.get("$schema")
    if not isinstance(schema, str):
        return None
    for version, hints in _SCHEMA_HINTS.items():
        if any(hint in schema for hint in hints):
            return version
    return None


def _check(document: dict[str, Any], standard: str) -> list[Problem]:
    models = _models(standard)
    dmp = document.get("dmp")
    if not isinstance(dmp, dict):
        return [Problem("$", "the document must be a JSON object with a top-level 'dmp' object")]
    problems = []
    if not models.ALLOWS_EXTRA_ROOT_KEYS and set(document) != {"dmp"}:
        others = ", ".join(sorted(set(document) - {"dmp"}))
        problems.append(Problem("$", f"version {standard} allows only 'dmp' at the top level, not: {others}"))
    try:
        models.DMP.model_validate_json(json.dumps(dmp), strict=True)
    except ValidationError as exc:
        problems += [Problem(_path(tuple(e["loc"])), _shorten(e["msg"])) for e in exc.errors()]
    return problems


def validate(document: Any, standard: str | None = None) -> Checked:
    """Check ``document`` against ``standard`` (1.1 or 1.2); raise NotAStandardDmp with every problem.

    Without ``standard``: the version the document names in ``$schema``; otherwise 1.2, then 1.1
    (a 1.1 file may not carry ``$schema``). When neither accepts it, the 1.2 problems are reported.
    """
    if standard is not None and standard not in VERSIONS:
        raise ValueError(f"the standard version must be one of {', '.join(VERSIONS)}")
    if not isinstance(document, dict):
        raise NotAStandardDmp(standard or LATEST, [Problem("$", "the document must be a JSON object")])
    chosen = standard or _declared(document)
    candidates = [chosen] if chosen else [LATEST, "1.1"]
    first: tuple[str, list[Problem]] | None = None
    for version in candidates:
        problems = _check(document, version)
        if not problems:
            return Checked(version, document)
        first = first or (version, problems)
    assert first is not None
    raise NotAStandardDmp(*first)


def parse_json(text: str | bytes) -> Any:
    """JSON text → value, refusing what the standard cannot hold (NaN, duplicate keys)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
        return dict(pairs)

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotAStandardDmp(LATEST, [Problem("$", f"not valid JSON: {str(exc)[:200]}")]) from None
