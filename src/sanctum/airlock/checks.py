"""The automatic checks an export file gets before any person sees it: pass, review or fail, each
with its reasons.

Pure functions over a file's name and plaintext and the project's rules; no I/O. The verdict is the
worst of the findings. ``pass`` means the checks found nothing, not that the file is safe: every
file is still reviewed by people. ``fail`` blocks release unless a data owner overrides it with a
written reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sanctum.airlock import acro, sniff
from sanctum.airlock.rules import ExportRules

ORDER = {"pass": 0, "review": 1, "fail": 2}
Finding = dict[str, str]  # {"rule": ..., "verdict": pass | review | fail, "message": ...}


@dataclass
class CheckResult:
    verdict: str
    findings: list[Finding] = field(default_factory=list)
    columns: list[str] | None = None
    rows: int | None = None


def worst(findings: list[Finding]) -> str:
    return max((f["verdict"] for f in findings), key=ORDER.__getitem__, default="pass")


def _finding(rule: str, verdict: str, message: str) -> Finding:
    return {"rule": rule, "verdict": verdict, "message": message}


def _type_findings(kind: sniff.Kind, rules: ExportRules) -> list[Finding]:
    claimed, found = kind.claimed, kind.found
    if claimed in sniff.IMAGE_KINDS or found in sniff.IMAGE_KINDS:
        what = found if found in sniff.IMAGE_KINDS else claimed
        if rules.allow_images:
            return [_finding("file_type", "review", f"{what} image or array, allowed by the project's rules")]
        return [
            _finding(
                "file_type",
                "fail",
                f"{what} images and raw arrays do not leave unless the project's rules allow them",
            )
        ]
    if claimed in sniff.ARCHIVE_KINDS or found in sniff.ARCHIVE_KINDS:
        return [_finding("file_type", "fail", "archives cannot be checked; export the files inside instead")]
    if claimed not in rules.allowed_types:
        allowed = ", ".join(sorted(rules.allowed_types))
        return [_finding("file_type", "fail", f"this file type is not allowed out (allowed: {allowed})")]
    if not kind.consistent:
        return [
            _finding(
                "file_type",
                "fail",
                f"the content ({found}) does not match the name, which says {claimed}",
            )
        ]
    return []


def _table(name: str, data: bytes, rules: ExportRules, result: CheckResult) -> None:
    # pyarrow loads with the first table checked, not at server start
    from sanctum.airlock.table_checks import check_table, read_table
    from sanctum.datasets.tables import TableError

    try:
        table = read_table(data, name)
    except TableError as exc:
        result.findings.append(_finding("table", "fail", f"not a readable table: {exc.message}"))
        return
    report = check_table(table, rules)
    result.findings += report.findings
    result.columns, result.rows = report.columns, report.rows


def check_file(
    name: str, data: bytes, rules: ExportRules, *, acro_outputs: list[acro.AcroOutput] | None = None
) -> CheckResult:
    """Every rule that applies to this file, in one pass over its bytes."""
    result = CheckResult("pass")
    if len(data) > rules.max_file_bytes:
        result.findings.append(
            _finding("size", "fail", f"{len(data)} bytes, more than the limit of {rules.max_file_bytes}")
        )
    kind = sniff.kind_of(name, data)
    type_problems = _type_findings(kind, rules)
    result.findings += type_problems
    if not type_problems and not result.findings:
        if kind.claimed in sniff.TABLE_KINDS:
            _table(name, data, rules, result)
        elif kind.claimed in sniff.FIGURE_KINDS:
            result.findings.append(
                _finding("figure", "review", "figures cannot be checked automatically: look at every label")
            )
        elif (
            kind.claimed == "json"
            and name.rsplit("/", 1)[-1] == acro.RESULTS_NAME
            and (parsed := acro.parse(data))
        ):
            result.findings.append(acro.summary_finding(parsed))
        else:
            result.findings.append(
                _finding("free_text", "review", "free text cannot be checked automatically: read all of it")
            )
    if acro_outputs:
        result.findings += acro.findings_for(acro_outputs, name)
    result.verdict = worst(result.findings)
    return result
