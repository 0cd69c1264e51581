"""ACRO's ``results.json``: the verdicts a researcher's own disclosure-control tool reached.

ACRO (AI-SDC/ACRO) wraps pandas/statsmodels calls and, on ``finalise``, writes a folder of outputs
with ``results.json``: ``{"version": ..., "results": {"output_0": {"status": "pass"|"review"|"fail",
"type": ..., "summary": ..., "files": [{"name": ..., "sdc": {...}}], "exception": ..., ...}}}``.
When a job's output carries that file, its verdict for each output file is shown beside Sanctum's
own checks. It is a second opinion, never a pass: ACRO's ``fail`` fails the file here too, and an
ACRO ``pass`` does not lift a failure Sanctum found. Only the structure is read; nothing in it runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

RESULTS_NAME = "results.json"
STATUSES = frozenset({"pass", "review", "fail"})
MAX_RESULTS_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class AcroOutput:
    uid: str
    status: str
    output_type: str
    summary: str
    exception: str
    files: tuple[str, ...]


def parse(data: bytes) -> list[AcroOutput] | None:
    """ACRO's records, or None when ``data`` is not an ACRO results file."""
    if len(data) > MAX_RESULTS_BYTES:
        return None
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("results"), dict):
        return None
    outputs = []
    for uid, record in document["results"].items():
        if not isinstance(record, dict) or record.get("status") not in STATUSES:
            return None
        files = record.get("files", [])
        names = tuple(str(f["name"]) for f in files if isinstance(f, dict) and isinstance(f.get("name"), str))
        outputs.append(
            AcroOutput(
                uid=str(uid)[:100],
                status=record["status"],
                output_type=str(record.get("type", ""))[:100],
                summary=str(record.get("summary", ""))[:500],
                exception=str(record.get("exception", "") or "")[:1000],
                files=names,
            )
        )
    return outputs


def findings_for(outputs: list[AcroOutput], file_name: str) -> list[dict[str, str]]:
    """ACRO's verdicts on ``file_name`` (matched by its base name, as ACRO writes bare names)."""
    base = file_name.rsplit("/", 1)[-1]
    found = []
    for output in outputs:
        if base in output.files:
            message = f"ACRO {output.uid} ({output.output_type}): {output.status}"
            if output.summary:
                message += f" — {output.summary}"
            if output.exception:
                message += f"; exception requested: {output.exception}"
            found.append({"rule": "acro", "verdict": output.status, "message": message})
    return found


def summary_finding(outputs: list[AcroOutput]) -> dict[str, str]:
    """What the results file itself gets: how ACRO judged the whole set."""
    counts = {status: sum(1 for o in outputs if o.status == status) for status in ("pass", "review", "fail")}
    verdict = "fail" if counts["fail"] else "review"
    return {
        "rule": "acro",
        "verdict": verdict,
        "message": (
            f"ACRO results for {len(outputs)} output(s): {counts['pass']} pass, {counts['review']} review, "
            f"{counts['fail']} fail"
        ),
    }
