"""What a valid DMP means for a project's datasets: the rules the services enforce.

**Matching rule.** A dataset described in the DMP (``dmp.dataset[]``) governs the Sanctum dataset
of the same project whose name equals its ``dataset_id.identifier`` or its ``title``, compared
without surrounding spaces and case-insensitively (Sanctum names are lower case). When several
DMP datasets match one Sanctum dataset, the strictest reading wins: personal or sensitive if any
says ``yes``; ``closed`` over ``shared`` over ``open``; the earliest ``available_until``; and the
locations every one of them allows. A DMP dataset that matches nothing governs nothing until a
dataset of that name exists.

**Distributions.** ``data_access`` is the strictest over the dataset's distributions, the
retention date the earliest ``available_until``, and the allowed compute locations are the
``host.geo_location`` values of its distributions (any of them; none declared = no restriction).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sanctum.dmp.extension import Controls

_YNU = {"no": 0, "unknown": 1, "yes": 2}
_ACCESS = {"open": 0, "shared": 1, "closed": 2}


def match_key(value: object) -> str:
    return str(value).strip().lower() if value is not None else ""


@dataclass(frozen=True)
class DatasetRules:
    """The rules for one Sanctum dataset, combined from every DMP dataset that matches it."""

    name: str
    described_as: tuple[str, ...]  # the DMP titles that matched
    personal_data: str = "unknown"
    sensitive_data: str = "unknown"
    data_access: str | None = None
    available_until: date | None = None
    locations: frozenset[str] | None = None  # None: no host location declared, any place allowed

    @property
    def needs_deidentification(self) -> bool:
        return "yes" in (self.personal_data, self.sensitive_data)

    @property
    def closed(self) -> bool:
        return self.data_access == "closed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "described_as": list(self.described_as),
            "personal_data": self.personal_data,
            "sensitive_data": self.sensitive_data,
            "data_access": self.data_access,
            "available_until": self.available_until.isoformat() if self.available_until else None,
            "locations": sorted(self.locations) if self.locations is not None else None,
            "deidentification_required": self.needs_deidentification,
        }


def _stricter(a: str, b: str, order: dict[str, int]) -> str:
    return a if order.get(a, 0) >= order.get(b, 0) else b


def _entry(item: dict[str, Any]) -> dict[str, Any]:
    """One DMP dataset, reduced to what Sanctum enforces."""
    access: str | None = None
    until: date | None = None
    locations: set[str] = set()
    for dist in item.get("distribution") or []:
        if dist.get("data_access"):
            access = (
                dist["data_access"] if access is None else _stricter(access, dist["data_access"], _ACCESS)
            )
        if dist.get("available_until"):
            day = date.fromisoformat(dist["available_until"])
            until = day if until is None else min(until, day)
        host = dist.get("host") or {}
        if host.get("geo_location"):
            locations.add(host["geo_location"])
    return {
        "title": str(item.get("title", "")),
        "keys": {match_key(item.get("title")), match_key((item.get("dataset_id") or {}).get("identifier"))}
        - {""},
        "personal_data": item.get("personal_data", "unknown"),
        "sensitive_data": item.get("sensitive_data", "unknown"),
        "data_access": access,
        "available_until": until,
        "locations": frozenset(locations) if locations else None,
    }


def _combine(name: str, entries: Iterable[dict[str, Any]]) -> DatasetRules | None:
    rules: DatasetRules | None = None
    for e in entries:
        if rules is None:
            rules = DatasetRules(
                name,
                (e["title"],),
                e["personal_data"],
                e["sensitive_data"],
                e["data_access"],
                e["available_until"],
                e["locations"],
            )
            continue
        access = rules.data_access
        if e["data_access"] is not None:
            access = e["data_access"] if access is None else _stricter(access, e["data_access"], _ACCESS)
        until = min((d for d in (rules.available_until, e["available_until"]) if d), default=None)
        locations = rules.locations
        if e["locations"] is not None:
            locations = e["locations"] if locations is None else locations & e["locations"]
        rules = DatasetRules(
            name,
            (*rules.described_as, e["title"]),
            _stricter(rules.personal_data, e["personal_data"], _YNU),
            _stricter(rules.sensitive_data, e["sensitive_data"], _YNU),
            access,
            until,
            locations,
        )
    return rules


@dataclass(frozen=True)
class Plan:
    """The DMP in force for one project (``version`` None: the project has no DMP)."""

    version: int | None = None
    controls: Controls = field(default_factory=Controls)
    entries: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_document(cls, dmp: dict[str, Any], controls: Controls, version: int | None) -> Plan:
        return cls(
            version, controls, tuple(_entry(d) for d in dmp.get("dataset") or [] if isinstance(d, dict))
        )

    def rules_for(self, dataset_name: str) -> DatasetRules | None:
        key = match_key(dataset_name)
        return _combine(dataset_name, (e for e in self.entries if key in e["keys"]))

    def described_names(self) -> list[str]:
        """The names a DMP dataset could govern (its identifiers and titles), for listing."""
        return sorted({k for e in self.entries for k in e["keys"]})

    def unmatched(self, existing: Iterable[str]) -> list[str]:
        """Titles of DMP datasets that govern no dataset of the project (yet)."""
        names = {match_key(n) for n in existing}
        return [e["title"] for e in self.entries if not (e["keys"] & names)]


def country(location: str | None) -> str:
    """``NL``, ``nl`` or ``NL-NH`` (ISO 3166-2) → ``NL``; '' when no location is set."""
    return (location or "").strip().upper().split("-", 1)[0]
