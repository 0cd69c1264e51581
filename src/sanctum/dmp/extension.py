"""Sanctum's own controls, carried in the DMP under a namespaced extension.

The standard leaves room for deployment-specific fields ("further fields can be added in
specific deployments"); we follow the convention of DMP tools that extend it (DMPRoadmap): a
``dmp.extension`` list of single-key objects, one per namespace. Sanctum reads the object keyed
``sanctum`` and ignores every other namespace::

    "extension": [{"sanctum": {"reviewers": 2, "min_cell_count": 10,
                               "allowed_output_types": ["csv", "png"],
                               "allowed_locations": ["NL"]}}]

Why closed (unknown keys refused) and strict (no "2" for 2): a typo in a control must not
silently leave the default in force.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sanctum.airlock.sniff import EXTENSIONS
from sanctum.dmp.standard import Problem

NAMESPACE = "sanctum"
OUTPUT_KINDS = frozenset(EXTENSIONS.values())


def _country_codes() -> frozenset[str]:
    from madmpy.country_code import CountryCode  # the standard's ISO 3166-1 alpha-2 list

    return frozenset(code.value for code in CountryCode)


class Controls(BaseModel):
    """What the extension may set; None leaves the platform's default (or the project setting)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reviewers: Literal[1, 2] | None = Field(default=None, description="independent approvals an export needs")
    min_cell_count: int | None = Field(default=None, ge=1, le=1_000_000)
    max_rows: int | None = Field(default=None, ge=1, le=100_000_000)
    allowed_output_types: list[str] | None = Field(default=None, max_length=64)
    allow_images: bool | None = None
    identifier_columns: list[str] | None = Field(default=None, max_length=1000)
    allowed_locations: list[str] | None = Field(default=None, max_length=300)

    @field_validator("allowed_output_types")
    @classmethod
    def _kinds(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - OUTPUT_KINDS)
        if unknown:
            raise ValueError(f"unknown output types {unknown}; known: {', '.join(sorted(OUTPUT_KINDS))}")
        return sorted(set(value))

    @field_validator("allowed_locations")
    @classmethod
    def _countries(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - _country_codes())
        if unknown:
            raise ValueError(f"{unknown} are not ISO 3166-1 alpha-2 country codes in capitals")
        return sorted(set(value))

    @field_validator("identifier_columns")
    @classmethod
    def _columns(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not c.strip() or len(c) > 200 for c in value):
            raise ValueError("column names must be 1-200 characters")
        return value


def read(dmp: dict[str, Any]) -> tuple[Controls, list[Problem]]:
    """The Sanctum controls of a DMP (defaults when it has none) and any problems with them."""
    entries = dmp.get("extension")
    if isinstance(entries, dict) and NAMESPACE in entries:
        return Controls(), [Problem("dmp.extension", "must be a list of objects, one per namespace")]
    if not isinstance(entries, list):
        return Controls(), []
    found = [(i, e[NAMESPACE]) for i, e in enumerate(entries) if isinstance(e, dict) and NAMESPACE in e]
    if not found:
        return Controls(), []
    if len(found) > 1:
        return Controls(), [Problem("dmp.extension", f"the '{NAMESPACE}' namespace appears more than once")]
    index, value = found[0]
    where = f"dmp.extension[{index}].{NAMESPACE}"
    if not isinstance(value, dict):
        return Controls(), [Problem(where, "must be an object")]
    try:
        return Controls.model_validate(value), []
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
            problems.append(Problem(where + loc, str(error["msg"]).removeprefix("Value error, ")[:300]))
        return Controls(), problems
