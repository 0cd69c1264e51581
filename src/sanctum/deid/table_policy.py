"""The column policy a data owner declares for a clinical table: what each column becomes on ingest,
and what each role then sees.

Why a strict, closed model: the policy is the only thing standing between an uploaded table and the
project, so anything it does not say must fail rather than pass. Every action and every setting is
validated here, before any data is read; unknown settings are errors (a typo such as ``"keep_lst"``
would otherwise silently mean "mask everything" or "keep everything"). Messages name the column and
the problem, never a cell value: policies are written by people, but tables are the sensitive part.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sanctum.access.permissions import Role
from sanctum.errors import InvalidInput

__all__ = [
    "ColumnAction",
    "DateShift",
    "Drop",
    "Generalise",
    "Keep",
    "Mask",
    "PolicyError",
    "Pseudonymise",
    "TablePolicy",
    "TopBottomCode",
    "ViewAction",
    "dump_policy",
    "edge_text",
    "load_policy",
]

#: Actions that need the project key or the original patient IDs: possible on ingest only, because a
#: view is computed from the stored (already de-identified) table without the key.
INGEST_ONLY = frozenset({"pseudonymise", "date_shift"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class PolicyError(InvalidInput, ValueError):
    """A policy that cannot be used; the API answers 422 with the message."""

    code = "invalid_table_policy"


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Keep(_Action):
    """Store the column unchanged."""

    action: Literal["keep"]


class Drop(_Action):
    """Leave the column out of the stored table (or out of a role's view)."""

    action: Literal["drop"]


class Pseudonymise(_Action):
    """Replace each value by a keyed HMAC pseudonym; the patient column gets DICOM's pseudonym."""

    action: Literal["pseudonymise"]


class DateShift(_Action):
    """Move each date by its patient's offset, the same offset DICOM uses for that patient."""

    action: Literal["date_shift"]


class Generalise(_Action):
    """Replace each value by a coarser one: exactly one of ``bins``, ``date``, ``prefix``,
    ``hierarchy_csv``."""

    action: Literal["generalise"]
    bins: list[float] | None = None
    date: Literal["year", "month"] | None = None
    prefix: Annotated[int, Field(ge=0)] | None = None
    hierarchy_csv: str | None = None
    default: str | None = None

    @field_validator("bins")
    @classmethod
    def _bins_increase(cls, bins: list[float] | None) -> list[float] | None:
        """Bins are edges of half-open bands, so they must be finite and strictly increasing."""
        if bins is None:
            return None
        if len(bins) < 2:
            raise ValueError("bins needs at least two edges, e.g. [0, 18, 40, 65, 120]")
        if not all(math.isfinite(b) for b in bins):
            raise ValueError("bins must be finite numbers")
        if any(b >= c for b, c in itertools.pairwise(bins)):
            raise ValueError("bins must be strictly increasing")
        return bins

    @field_validator("hierarchy_csv")
    @classmethod
    def _hierarchy_parses(cls, text: str | None) -> str | None:
        if text is not None:
            parse_hierarchy(text)
        return text

    @model_validator(mode="after")
    def _exactly_one(self) -> Generalise:
        given = [
            name for name in ("bins", "date", "prefix", "hierarchy_csv") if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "generalise needs exactly one of bins, date, prefix or hierarchy_csv"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.default is not None and self.hierarchy_csv is None:
            raise ValueError("default applies only to hierarchy_csv")
        return self

    def bin_labels(self) -> list[str]:
        """Band labels: integer edges give inclusive integer ranges ("18-39"), others "18.5-<40"; the
        last band includes its upper edge ("65-120"), so the outer edges bound the accepted values."""
        bins = self.bins or []
        integral = all(b.is_integer() for b in bins)
        labels = []
        for i, (lo, hi) in enumerate(itertools.pairwise(bins)):
            if i == len(bins) - 2:
                labels.append(f"{edge_text(lo)}-{edge_text(hi)}")
            elif integral:
                labels.append(f"{edge_text(lo)}-{int(hi) - 1}")
            else:
                labels.append(f"{edge_text(lo)}-<{edge_text(hi)}")
        return labels

    def hierarchy(self) -> dict[str, str]:
        """The value → general mapping of ``hierarchy_csv`` (empty for the other forms)."""
        return parse_hierarchy(self.hierarchy_csv) if self.hierarchy_csv is not None else {}


class Mask(_Action):
    """Replace each value by a fixed string, or by ``****`` followed by its last N characters."""

    action: Literal["mask"]
    value: str | None = None
    keep_last: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Mask:
        if (self.value is None) == (self.keep_last is None):
            raise ValueError('mask needs exactly one of "value" (a fixed string) or "keep_last" (a number)')
        return self


class TopBottomCode(_Action):
    """Replace values below ``min`` by ``min`` and above ``max`` by ``max``."""

    action: Literal["top_bottom_code"]
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> TopBottomCode:
        if self.min is None and self.max is None:
            raise ValueError("top_bottom_code needs min, max or both")
        if any(b is not None and not math.isfinite(b) for b in (self.min, self.max)):
            raise ValueError("min and max must be finite numbers")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


ColumnAction = Annotated[
    Keep | Drop | Pseudonymise | DateShift | Generalise | Mask | TopBottomCode, Field(discriminator="action")
]
#: Views take the same models; ``_check_views`` rejects the ingest-only actions with a clear message.
ViewAction = ColumnAction


def edge_text(x: float) -> str:
    """A bin edge or bound as written: 18, not 18.0."""
    return str(int(x)) if x.is_integer() else repr(x)


def parse_hierarchy(text: str) -> dict[str, str]:
    """Parse ``value,general`` CSV text (that header first) into a mapping.

    Why a required header: without it a forgotten header row would be read as a mapping, and with it
    a forgotten header is a clear error here rather than a puzzling unmapped value at ingest.
    """
    rows = list(csv.reader(io.StringIO(text)))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows or [c.strip() for c in rows[0]] != ["value", "general"]:
        raise ValueError('hierarchy_csv must start with the header line "value,general"')
    mapping: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise ValueError(f"hierarchy_csv line {line} has {len(row)} fields; it needs 2 (value,general)")
        value, general = row
        if value in mapping and mapping[value] != general:
            raise ValueError(f"hierarchy_csv line {line} maps a value that an earlier line already maps")
        mapping[value] = general
    if not mapping:
        raise ValueError("hierarchy_csv has a header but no mappings")
    return mapping


class TablePolicy(BaseModel):
    """One dataset's column policy. Build it with ``load_policy`` to get readable errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patient_column: str | None = None
    columns: dict[str, ColumnAction]
    views: dict[str, dict[str, ViewAction]] = Field(default_factory=dict)
    quasi_identifiers: list[str] = Field(default_factory=list)
    sensitive: list[str] = Field(default_factory=list)
    # The anonymity report's "small class" threshold for this table (sanctum.datasets.anonymity
    # uses 5 when unset): some publication rules ask for 10 or 11.
    k_threshold: Annotated[int, Field(ge=1, le=1000)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TablePolicy:
        if not self.columns:
            raise ValueError("columns is empty: name every column of the table")
        for name in self.columns:
            if not name.strip() or _CONTROL.search(name):
                raise ValueError(f"column name {name!r} is empty or contains control characters")
        if not self.stored_columns():
            raise ValueError("every column is dropped: nothing would be stored")
        self._check_patient_column()
        self._check_views()
        self._check_lists()
        return self

    def _check_patient_column(self) -> None:
        shifted = [name for name, a in self.columns.items() if a.action == "date_shift"]
        if self.patient_column is None:
            if shifted:
                raise ValueError(
                    f"column {shifted[0]!r}: date_shift needs patient_column, the column whose patient ID "
                    "decides each row's offset"
                )
            return
        action = self.columns.get(self.patient_column)
        if action is None:
            raise ValueError(f"patient_column {self.patient_column!r} is not listed in columns")
        if action.action not in ("pseudonymise", "drop"):
            raise ValueError(
                f"column {self.patient_column!r}: the patient column must be pseudonymise or drop, "
                f"not {action.action}"
            )

    def _check_views(self) -> None:
        stored = set(self.stored_columns())
        roles = [r.value for r in Role]
        for role, actions in self.views.items():
            if role not in roles:
                raise ValueError(f"views: unknown role {role!r}; roles are {', '.join(roles)}")
            for name, action in actions.items():
                if name not in self.columns:
                    raise ValueError(f"views.{role}: column {name!r} is not listed in columns")
                if name not in stored:
                    raise ValueError(
                        f"views.{role}: column {name!r} is dropped on ingest, so no role sees it"
                    )
                if action.action in INGEST_ONLY:
                    raise ValueError(
                        f"views.{role}: column {name!r}: {action.action} needs the project key and the "
                        "original values, so it is possible on ingest only (in columns)"
                    )

    def _check_lists(self) -> None:
        for list_name in ("quasi_identifiers", "sensitive"):
            names: list[str] = getattr(self, list_name)
            if len(set(names)) != len(names):
                raise ValueError(f"{list_name} lists a column twice")
            for name in names:
                if name not in self.columns:
                    raise ValueError(f"{list_name}: column {name!r} is not listed in columns")
                if self.columns[name].action == "drop":
                    raise ValueError(f"{list_name}: column {name!r} is dropped on ingest")
        both = sorted(set(self.quasi_identifiers) & set(self.sensitive))
        if both:
            raise ValueError(f"column {both[0]!r} is listed both as a quasi-identifier and as sensitive")
        if self.k_threshold is not None and not self.quasi_identifiers:
            raise ValueError("k_threshold is the anonymity report's threshold: it needs quasi_identifiers")

    def stored_columns(self) -> list[str]:
        """The columns of the ingested table, in policy order (every column not dropped)."""
        return [name for name, action in self.columns.items() if action.action != "drop"]


def _describe(error: dict[str, object]) -> str:
    """One pydantic error as "where: what", with the column named and no input value quoted."""
    loc = [str(part) for part in error.get("loc", ())]  # type: ignore[union-attr]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    kind = error.get("type")
    if kind == "union_tag_not_found":
        message = 'missing "action" (one of keep, drop, pseudonymise, generalise, date_shift, mask, ' + (
            "top_bottom_code)"
        )
    elif kind == "union_tag_invalid":
        message = (
            'unknown "action"; use one of keep, drop, pseudonymise, generalise, date_shift, mask, '
            "top_bottom_code"
        )
    elif kind == "extra_forbidden" and loc:
        message = f"unknown setting {loc[-1]!r}"
        loc = loc[:-1]
    where = ""
    if len(loc) >= 2 and loc[0] == "columns":
        where = f"column {loc[1]!r}" + (f" ({' '.join(loc[2:])})" if len(loc) > 2 else "")
    elif len(loc) >= 3 and loc[0] == "views":
        where = f"views.{loc[1]}: column {loc[2]!r}" + (f" ({' '.join(loc[3:])})" if len(loc) > 3 else "")
    elif loc:
        where = ".".join(loc)
    return f"{where}: {message}" if where else message


def load_policy(data: str | bytes | dict[str, object]) -> TablePolicy:
    """Parse and validate a policy from JSON text (or an already parsed dict).

    Raises ``PolicyError`` listing every problem found, each naming its column.
    """
    try:
        if isinstance(data, dict):
            return TablePolicy.model_validate(data)
        return TablePolicy.model_validate_json(data)
    except ValidationError as exc:
        problems = [_describe(dict(e)) for e in exc.errors(include_input=False, include_url=False)]
        raise PolicyError("invalid table policy: " + "; ".join(problems)) from None


def dump_policy(policy: TablePolicy) -> str:
    """The policy as JSON, without unset settings, so it round-trips through ``load_policy``."""
    return policy.model_dump_json(exclude_none=True, indent=2)
