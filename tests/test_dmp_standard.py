"""Validation against the RDA DMP Common Standard (v1.1, v1.2), the ``sanctum`` extension, and
what a valid plan means for each dataset. Pure functions: no catalog, so SQLite runs only."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import pytest
import rfc8785

from dmp_helpers import changed, dataset, plan
from sanctum.dmp import extension, service, standard
from sanctum.dmp.plan import country

CLINICAL = dataset("clinical", personal="yes", access="closed", until="2030-06-30", location="NL")


def problems(document, version=None) -> dict[str, str]:
    with pytest.raises(service.DmpInvalid) as err:
        service.validate(document, version)
    return {p.path: p.message for p in err.value.problems}


def test_v12_and_v11_samples_are_accepted_and_named_by_their_version() -> None:
    v12 = service.validate(plan(CLINICAL, dataset("scans")))
    assert v12.standard == "1.2"  # named by its $schema
    v11 = plan(CLINICAL, version="1.1")
    assert "$schema" not in v11
    assert service.validate(v11, "1.1").standard == "1.1"
    # Without a version named, 1.2 is tried, then 1.1; when neither accepts it, 1.2's problems show.
    with pytest.raises(service.DmpInvalid) as err:
        service.validate(changed(v11, "dmp.title", ...))
    assert err.value.standard == "1.2" and err.value.problems[0].path == "dmp.title"
    with pytest.raises(service.DmpInvalid) as err:
        service.validate(changed(v11, "dmp.title", ...), "1.1")
    assert err.value.standard == "1.1"
    # The digest names the content, not its spelling: key order and spaces do not change it.
    assert v12.sha256 == hashlib.sha256(rfc8785.dumps(plan(CLINICAL, dataset("scans")))).hexdigest()
    respelled = json.loads(json.dumps(plan(CLINICAL, dataset("scans")), indent=4, sort_keys=True))
    assert service.validate(respelled).sha256 == v12.sha256


def test_required_fields_are_reported_with_their_paths() -> None:
    broken = changed(plan(CLINICAL), "dmp.contact", ...)
    broken = changed(broken, "dmp.dataset.0.sensitive_data", ...)
    found = problems(broken)
    assert found["dmp.contact"] == "Field required"
    assert found["dmp.dataset[0].sensitive_data"] == "Field required"
    assert set(problems({"dmp": {}})) >= {"dmp.title", "dmp.dataset", "dmp.created", "dmp.language"}


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        ("dmp.dataset.0.personal_data", "maybe", "dmp.dataset[0].personal_data"),  # yes/no/unknown
        ("dmp.dataset.0.personal_data", True, "dmp.dataset[0].personal_data"),  # not a JSON boolean
        ("dmp.ethical_issues_exist", "Yes", "dmp.ethical_issues_exist"),  # case matters
        ("dmp.dataset.0.distribution.0.data_access", "private", "dmp.dataset[0].distribution[0].data_access"),
        (
            "dmp.dataset.0.distribution.0.available_until",
            "2030-13-01",
            "dmp.dataset[0].distribution[0].available_until",
        ),
        (
            "dmp.dataset.0.distribution.0.available_until",
            "30/06/2030",
            "dmp.dataset[0].distribution[0].available_until",
        ),
        ("dmp.created", 1736154000, "dmp.created"),  # ISO 8601 text, not a timestamp
        ("dmp.language", "english", "dmp.language"),  # ISO 639-3
        (
            "dmp.dataset.0.distribution.0.byte_size",
            "12",
            "dmp.dataset[0].distribution[0].byte_size",
        ),  # strict
        (
            "dmp.dataset.0.distribution.0.host.geo_location",
            "Netherlands",
            "dmp.dataset[0].distribution[0].host.geo_location",
        ),
        ("dmp.contact.mbox", "not-an-address", "dmp.contact.mbox"),
    ],
)
def test_controlled_vocabularies_dates_and_types_are_checked(path, value, where) -> None:
    found = problems(changed(plan(CLINICAL), path, value))
    assert where in found, found
    if where.endswith("geo_location"):
        assert "ISO 3166-1 alpha-2" in found[where]  # the 249 codes are not spelled out


def test_root_rules_and_json_itself() -> None:
    # 1.1 closes the top level: its schema allows only "dmp" there.
    assert "$" in problems(plan(CLINICAL, version="1.2"), "1.1")
    assert problems([1, 2]) == {"$": "the document must be a JSON object"}
    assert "$" in problems({"plan": {}})
    for text in ('{"dmp": {"title": NaN}}', '{"dmp": {}, "dmp": {}}', "{not json", b"\xff\xfe"):
        with pytest.raises(standard.NotAStandardDmp) as err:
            standard.parse_json(text)
        assert err.value.problems[0].path == "$"
    with pytest.raises(ValueError, match=r"1\.1, 1\.2"):
        standard.validate(plan(CLINICAL), "2.0")


def test_the_sanctum_extension_is_closed_and_strict() -> None:
    good = {
        "reviewers": 1,
        "min_cell_count": 5,
        "allowed_output_types": ["png", "csv"],
        "allowed_locations": ["NL", "DE"],
        "identifier_columns": ["Ward Code"],
        "allow_images": False,
    }
    valid = service.validate(plan(CLINICAL, controls=good))
    assert valid.controls.reviewers == 1 and valid.controls.allowed_output_types == ["csv", "png"]
    assert valid.controls.allowed_locations == ["DE", "NL"]
    where = "dmp.extension[1].sanctum"
    assert f"{where}.reviewer" in problems(plan(CLINICAL, controls={"reviewer": 2}))  # a typo is not ignored
    assert f"{where}.reviewers" in problems(plan(CLINICAL, controls={"reviewers": 3}))
    assert f"{where}.reviewers" in problems(plan(CLINICAL, controls={"reviewers": "2"}))
    assert f"{where}.min_cell_count" in problems(plan(CLINICAL, controls={"min_cell_count": 0}))
    assert (
        "'exe'"
        in problems(plan(CLINICAL, controls={"allowed_output_types": ["exe"]}))[
            f"{where}.allowed_output_types"
        ]
    )
    assert (
        "ISO 3166-1"
        in problems(plan(CLINICAL, controls={"allowed_locations": ["XX"]}))[f"{where}.allowed_locations"]
    )
    twice = plan(CLINICAL, controls={})
    twice["dmp"]["extension"].append({"sanctum": {}})
    assert "dmp.extension" in problems(twice)
    # Other namespaces, and a plan without the extension, leave every default in force.
    assert extension.read({"extension": [{"other": {"reviewers": 9}}]}) == (extension.Controls(), [])
    assert service.validate(plan(CLINICAL)).controls == extension.Controls()


def test_a_plan_matches_datasets_by_identifier_or_title_and_the_strictest_reading_wins() -> None:
    valid = service.validate(
        plan(
            dataset(
                "Clinical", identifier="https://doi.org/10.1234/clinical", personal="yes", until="2031-01-01"
            ),
            dataset(
                "clinical archive",
                identifier="clinical",
                sensitive="yes",
                access="closed",
                until="2030-06-30",
                location="NL",
            ),
            dataset("scans", access="open", location="DE"),
        )
    )
    rules = valid.plan(7)
    clinical = rules.rules_for("clinical")
    assert clinical is not None and clinical.needs_deidentification and clinical.closed
    assert (clinical.personal_data, clinical.sensitive_data) == ("yes", "yes")
    assert clinical.available_until == date(2030, 6, 30) and clinical.locations == {"NL"}
    assert clinical.described_as == ("Clinical", "clinical archive")
    scans = rules.rules_for("scans")
    assert scans is not None and not scans.needs_deidentification and scans.data_access == "open"
    assert rules.rules_for("visits") is None
    assert rules.unmatched(["scans"]) == ["Clinical", "clinical archive"]
    # Several distributions: the earliest date, the strictest access, any of their locations.
    entry = dataset("multi", until="2032-01-01", location="NL")
    entry["distribution"].append(
        {
            "title": "copy",
            "data_access": "closed",
            "available_until": "2031-05-05",
            "host": {"title": "h", "url": "https://h.example.org", "geo_location": "BE"},
        }
    )
    multi = service.validate(plan(entry)).plan().rules_for("multi")
    assert multi is not None and multi.available_until == date(2031, 5, 5)
    assert multi.closed and multi.locations == {"NL", "BE"}


def test_locations_compare_by_country() -> None:
    assert country("nl") == "NL" and country("DE-BY") == "DE" and country(" fr ") == "FR"
    assert country("") == "" and country(None) == ""
