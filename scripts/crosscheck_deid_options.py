"""Cross-check Sanctum's PS3.15 option columns against published copies of Table E.1-1.

No maintained, installable package ships the option columns (see docs/deidentification.md), so
Sanctum's are transcribed from the standard; this script compares them with two published copies
when you have them: innolitics ``dicom-standard`` (MIT, 2020 edition, JSON) and idiscore (its
2024-09 scrape, read as text, never imported). Neither is a dependency; download the wheels, unpack
them, and point the variables below at the files:

    SANCTUM_DICOM_STANDARD_JSON=.../confidentiality_profile_attributes.json \
    SANCTUM_IDISCORE_PUBLIC_DICOM=.../idiscore/_public_dicom.py \
    .venv/bin/python scripts/crosscheck_deid_options.py

It prints every disagreement that is not a known, explained difference, and exits 1 if any.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import os
import sys
from pathlib import Path

from sanctum.deid.profile import Options, effective_action, load_table

#: Machine-readable copies of Table E.1-1 with option columns, keyed by their column names.
PUBLISHED_OPTIONS = {
    "retain_device_identity": ("rtnDevIdOpt", "retain_device_id"),
    "retain_institution_identity": ("rtnInstIdOpt", "retain_institution_id"),
    "retain_patient_characteristics": ("rtnPatCharsOpt", "retain_patient_characteristics"),
    "clean_descriptors": ("cleanDescOpt", "clean_descriptors"),
    "clean_structured_content": ("cleanStructContOpt", "clean_structured_content"),
    "clean_graphics": ("cleanGraphOpt", "clean_graphics"),
    "retain_uids": ("rtnUIDsOpt", "retain_uid"),
    "full": ("rtnLongFullDatesOpt", "retain_full_dates"),
    "modified": ("rtnLongModifDatesOpt", "retain_modified_dates"),
}
#: Rows where Sanctum deliberately differs from a published column, and why.
KNOWN_DIFFERENCES = {
    # Edition changes after 2020 (innolitics copy is 2020): AE titles became C, and Referenced
    # Patient Sequence became K under Retain UIDs.
    ("retain_device_identity", 0x00400241),
    ("retain_device_identity", 0x00400001),
    ("retain_device_identity", 0x00321021),
    ("retain_uids", 0x00081120),
    # C under Modified Dates on values that are not dates (binary timestamps, a time-zone offset):
    # they cannot be shifted, so the stricter Basic Profile action stays.
    ("modified", 0x00340007),
    ("modified", 0x00080201),
    ("modified", 0x04000310),
}


def _published_innolitics() -> dict[str, dict[int, str]] | None:
    """innolitics ``dicom-standard`` (MIT, PyPI 0.1.0, 2020): confidentiality_profile_attributes.json."""
    path = os.environ.get("SANCTUM_DICOM_STANDARD_JSON")
    if not path:
        try:
            files = importlib.metadata.distribution("dicom-standard").files or []
        except importlib.metadata.PackageNotFoundError:
            return None
        found = [f for f in files if f.name == "confidentiality_profile_attributes.json"]
        if not found:
            return None
        path = str(found[0].locate())
    rows = json.loads(Path(path).read_text())
    columns: dict[str, dict[int, str]] = {}
    for option, (column, _) in PUBLISHED_OPTIONS.items():
        columns[option] = {
            int(row["id"].replace("x", "0"), 16): row[column] for row in rows if row.get(column)
        }
    return columns


def _published_idiscore() -> dict[str, dict[int, str]] | None:
    """idiscore (GPLv3, 1.2.0, scraped 2024-09-19): its scrape of the standard's HTML table.

    Read as text with ``ast``, never imported or copied: its dependencies pin pydicom < 3.
    """
    path = os.environ.get("SANCTUM_IDISCORE_PUBLIC_DICOM")
    if not path:
        spec = importlib.util.find_spec("idiscore")
        if spec is None or not spec.origin:
            return None
        path = str(Path(spec.origin).with_name("_public_dicom.py"))
    tree = ast.parse(Path(path).read_text())
    sets: dict[str, dict[int, str]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        rules = next(k.value for k in node.value.keywords if k.arg == "rules")
        column: dict[int, str] = {}
        for pair in rules.elts:
            ident, action = pair.elts
            if isinstance(ident, ast.Call) and ident.func.id == "SingleTag":
                code = {"KEEP": "K", "CLEAN": "C"}.get(action.attr, action.attr)
                column[int(ident.args[0].value, 16)] = code
        sets[node.targets[0].id] = column
    return {option: sets[name] for option, (_, name) in PUBLISHED_OPTIONS.items()}


def _options_for(option: str) -> Options:
    if option in ("full", "modified"):
        return Options(longitudinal=option)
    return Options(**{option: True})


def check(source) -> list[str] | None:  # noqa: ANN001
    published = source()
    if published is None:
        return None
    table, mismatches, checked = load_table(), [], 0
    for option, column in published.items():
        options = _options_for(option)
        for tag, want in column.items():
            rule = table.rule(tag)
            if rule is None:
                mismatches.append(f"{tag:08X} of the published {option} column is not a row of our table")
                continue
            got = effective_action(rule, options, rule.vr or "SQ")
            ok = got == want or (option == "modified" and got in ("S", "K"))
            if not ok and (option, tag) not in KNOWN_DIFFERENCES:
                mismatches.append(f"{option} {tag:08X}: standard {want}, ours {got}")
            checked += 1
    if checked < 300:
        mismatches.append(f"only {checked} rows compared; the published copy looks incomplete")
    return mismatches


if __name__ == "__main__":
    failed = False
    for source in (_published_innolitics, _published_idiscore):
        problems = check(source)
        name = source.__doc__.split(":")[0].strip()
        if problems is None:
            print(f"{name}: not available, skipped")
            continue
        print(f"{name}: {len(problems)} disagreement(s)")
        for line in problems:
            print("  ", line)
        failed |= bool(problems)
    sys.exit(1 if failed else 0)
