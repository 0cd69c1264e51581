"""Synthetic data management plans in the RDA DMP Common Standard (v1.1 and v1.2), written here.

Every person, identifier and address is made up; the ORCID is the registry's documented example
(0000-0002-1825-0097), which passes the checksum the standard's validators apply.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any

SCHEMA_12 = (
    "https://github.com/RDA-DMP-Common/RDA-DMP-Common-Standard/tree/master/examples/JSON/JSON-schema/1.2"
)


def days(n: int) -> str:
    """An ISO date ``n`` days from today (UTC), as the lifecycle counts them."""
    return (datetime.now(UTC).date() + timedelta(days=n)).isoformat()


def dataset(
    name: str,
    *,
    personal: str = "no",
    sensitive: str = "no",
    access: str = "shared",
    until: str | date | None = None,
    location: str | None = None,
    title: str | None = None,
    identifier: str | None = None,
) -> dict[str, Any]:
    """One ``dmp.dataset`` entry with one distribution (hosted on Sanctum)."""
    distribution: dict[str, Any] = {"title": f"{name} on Sanctum", "data_access": access}
    if until is not None:
        distribution["available_until"] = str(until)
    if location is not None:
        distribution["host"] = {
            "title": "Sanctum at the synthetic hospital",
            "url": "https://sanctum.example.org",
            "geo_location": location,
        }
    return {
        "title": title or name,
        "description": f"synthetic dataset {name}",
        "dataset_id": {"identifier": identifier or name, "type": "other"},
        "personal_data": personal,
        "sensitive_data": sensitive,
        "distribution": [distribution],
    }


def plan(
    *datasets: dict[str, Any],
    version: str = "1.2",
    controls: dict[str, Any] | None = None,
    title: str = "Sleep staging study DMP",
) -> dict[str, Any]:
    """A whole DMP file; 1.2 names its schema, 1.1 may carry nothing beside ``dmp``."""
    dmp: dict[str, Any] = {
        "title": title,
        "description": "synthetic plan for the tests",
        "language": "eng",
        "created": "2025-01-06T09:00:00Z",
        "modified": "2025-02-03T16:30:00Z",
        "ethical_issues_exist": "yes",
        "ethical_issues_description": "pseudonymised patient data; approved by a (synthetic) ethics board",
        "dmp_id": {"identifier": "https://dmp.example.org/plans/4711", "type": "url"},
        "contact": {
            "name": "Dana Steward",
            "mbox": "dana.steward@example.org",
            "contact_id": {"identifier": "https://orcid.org/0000-0002-1825-0097", "type": "orcid"},
        },
        "project": [{"title": "Sleep staging", "start": "2025-01-01", "end": "2027-12-31"}],
        "dataset": list(datasets),
    }
    if controls is not None:
        dmp["extension"] = [{"fairtool": {"template": 3}}, {"sanctum": controls}]
    document: dict[str, Any] = {"dmp": dmp}
    if version == "1.2":
        document = {"$schema": SCHEMA_12, **document}
    return document


def changed(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy with one value replaced (``dmp.dataset.0.personal_data``); ``...`` deletes it."""
    out = copy.deepcopy(document)
    parts = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = out
    for part in parts[:-1]:
        node = node[part]
    if value is ...:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return out


def put(client, h, document: dict[str, Any], *, project: str = "alpha", **body: Any):
    return client.put(f"/api/v1/projects/{project}/dmp", json={"document": document, **body}, headers=h)
