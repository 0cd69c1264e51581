"""MLflow's run search syntax, turned into SQLAlchemy conditions and orderings.

Supported, as MLflow documents it: clauses joined by ``AND``; ``metrics.<key>`` compared with a
number (=, !=, <, <=, >, >=) against the run's latest value; ``params.<key>`` and ``tags.<key>``
compared with a quoted string (=, !=, LIKE, ILIKE, IN, NOT IN); attributes ``status``,
``run_name``, ``run_id``, ``user_id`` (strings) and ``start_time``, ``end_time`` (numbers). Keys
may be quoted with backticks or double quotes (``tags."mlflow.runName"``). ``order_by`` takes
``<entity>.<key> [ASC|DESC]``. Anything else is refused with MLflow's INVALID_PARAMETER_VALUE,
never silently ignored: a filter that does not filter would return data the caller did not ask for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql.expression import UnaryExpression

from sanctum.db.models import User
from sanctum.tracking import MlflowError
from sanctum.tracking.models import Experiment, Run, RunLatestMetric, RunParam, RunTag

ENTITIES = {
    "metric": "metrics",
    "metrics": "metrics",
    "param": "params",
    "params": "params",
    "parameter": "params",
    "parameters": "params",
    "tag": "tags",
    "tags": "tags",
    "attribute": "attributes",
    "attributes": "attributes",
    "attr": "attributes",
    "run": "attributes",
}
STRING_ATTRIBUTES = {"status", "run_name", "run_id", "user_id", "lifecycle_stage"}
NUMBER_ATTRIBUTES = {"start_time", "end_time"}
NUMBER_OPS = {"=", "!=", "<", "<=", ">", ">="}
STRING_OPS = {"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"}

_CLAUSE = re.compile(
    r"""^\s*(?P<ident>(?:\w+\.)?(?:`[^`]+`|"[^"]+"|[\w.\-/:]+))\s*
    (?P<op>!=|>=|<=|=|>|<|NOT\s+IN\b|IN\b|ILIKE\b|LIKE\b)\s*(?P<value>.+?)\s*$""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)
_ORDER = re.compile(
    r"""^\s*(?P<ident>(?:\w+\.)?(?:`[^`]+`|"[^"]+"|[\w.\-/:]+))(?:\s+(?P<dir>ASC|DESC))?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
_STRING = re.compile(r"""^(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")$""", re.DOTALL)


@dataclass(frozen=True)
class Clause:
    entity: str
    key: str
    op: str
    value: Any


def _bad(message: str) -> MlflowError:
    return MlflowError("INVALID_PARAMETER_VALUE", message)


def split_and(text: str) -> list[str]:
    """Split on ``AND`` outside quotes (a value like 'a and b' stays whole)."""
    parts: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
            i += 1
            continue
        if ch in "'\"`":
            quote = ch
        elif re.match(r"\sAND\s", text[i : i + 5], re.IGNORECASE):
            parts.append("".join(current))
            current = []
            i += 4
            continue
        current.append(ch)
        i += 1
    if quote:
        raise _bad(f"unterminated quote in filter: {text!r}")
    parts.append("".join(current))
    return [p for p in (part.strip() for part in parts)]


def _identifier(ident: str) -> tuple[str, str]:
    head, dot, rest = ident.partition(".")
    if dot and head.lower() in ENTITIES:
        entity, key = ENTITIES[head.lower()], rest
    elif dot or ident.startswith(("`", '"')):
        raise _bad(f"invalid identifier {ident!r}: use metrics., params., tags. or attributes.")
    else:
        entity, key = "attributes", ident
    if len(key) >= 2 and key[0] == key[-1] and key[0] in '`"':
        key = key[1:-1]
    if not key:
        raise _bad(f"invalid identifier {ident!r}")
    if entity == "attributes":
        key = {"run_uuid": "run_id", "name": "run_name"}.get(key, key)
        if key not in STRING_ATTRIBUTES | NUMBER_ATTRIBUTES:
            raise _bad(f"invalid attribute key {key!r}")
    return entity, key


def _string(raw: str) -> str:
    match = _STRING.match(raw.strip())
    if not match:
        raise _bad(f"expected a quoted string, got {raw!r}")
    text = match.group(1) if match.group(1) is not None else match.group(2)
    return re.sub(r"\\(.)", r"\1", text)


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise _bad(f"expected a number, got {raw!r}") from None


def parse_filter(text: str | None) -> list[Clause]:
    if not text or not text.strip():
        return []
    clauses = []
    for part in split_and(text):
        match = _CLAUSE.match(part)
        if not match:
            raise _bad(f"invalid filter clause {part!r}")
        entity, key = _identifier(match["ident"])
        op = re.sub(r"\s+", " ", match["op"].upper())
        raw = match["value"]
        numeric = entity == "metrics" or (entity == "attributes" and key in NUMBER_ATTRIBUTES)
        if numeric:
            if op not in NUMBER_OPS:
                raise _bad(f"operator {op} is not allowed on {entity}.{key}")
            value: Any = _number(raw)
        else:
            if op not in STRING_OPS:
                raise _bad(f"operator {op} is not allowed on {entity}.{key}")
            if op in {"IN", "NOT IN"}:
                inner = raw.strip()
                if not (inner.startswith("(") and inner.endswith(")")):
                    raise _bad(f"{op} takes a parenthesised list of strings")
                items = re.findall(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""", inner[1:-1])
                if not items:
                    raise _bad(f"{op} takes a non-empty list of strings")
                value = [_string(item) for item in items]
            else:
                value = _string(raw)
                if op in {"LIKE", "ILIKE"} and _ends_in_escape(value):
                    raise _bad(f"{op} pattern ends in a lone escape (\\); write \\\\ for a backslash")
        clauses.append(Clause(entity, key, op, value))
    return clauses


def _ends_in_escape(pattern: str) -> bool:
    """Both databases take ``\\`` as the LIKE escape (set explicitly below); a pattern ending in an
    unpaired one is an error on PostgreSQL and undefined on SQLite, so it is refused up front."""
    return (len(pattern) - len(pattern.rstrip("\\"))) % 2 == 1


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "=":
        return column == value
    if op == "!=":
        return column != value
    if op == "<":
        return column < value
    if op == "<=":
        return column <= value
    if op == ">":
        return column > value
    if op == ">=":
        return column >= value
    if op == "LIKE":
        return column.like(value, escape="\\")
    if op == "ILIKE":
        return column.ilike(value, escape="\\")
    if op == "IN":
        return column.in_(value)
    return column.not_in(value)


def condition(clause: Clause) -> ColumnElement[bool]:
    """One clause as a condition on ``Run``; key/value tables through correlated EXISTS."""
    if clause.entity == "metrics":
        m = RunLatestMetric
        return exists().where(
            m.run_id == Run.id,
            m.key == clause.key,
            not_(m.is_nan),
            _compare(m.value, clause.op, clause.value),
        )
    if clause.entity in {"params", "tags"}:
        table = RunParam if clause.entity == "params" else RunTag
        return exists().where(
            table.run_id == Run.id, table.key == clause.key, _compare(table.value, clause.op, clause.value)
        )
    if clause.key == "user_id":
        emails = select(User.id).where(_compare(User.email, clause.op, clause.value))
        return Run.user_id.in_(emails)
    column = {
        "status": Run.status,
        "run_name": Run.name,
        "run_id": Run.id,
        "lifecycle_stage": Run.lifecycle_stage,
        "start_time": Run.start_time,
        "end_time": Run.end_time,
    }[clause.key]
    return _compare(column, clause.op, clause.value)


def where(text: str | None) -> ColumnElement[bool] | None:
    clauses = parse_filter(text)
    return and_(*(condition(c) for c in clauses)) if clauses else None


def order_by(items: list[str] | None, query: Any) -> tuple[Any, list[Any]]:
    """Join what the orderings need and return (query, ordering). Runs lacking the ordered value
    come last either way, as in MLflow; ties break on start time, then id, so pages are stable."""
    ordering: list[UnaryExpression[Any] | ColumnElement[Any]] = []
    for item in items or []:
        match = _ORDER.match(item)
        if not match:
            raise _bad(f"invalid order_by clause {item!r}")
        entity, key = _identifier(match["ident"])
        descending = (match["dir"] or "ASC").upper() == "DESC"
        if entity == "attributes":
            column: Any = {
                "status": Run.status,
                "run_name": Run.name,
                "run_id": Run.id,
                "lifecycle_stage": Run.lifecycle_stage,
                "start_time": Run.start_time,
                "end_time": Run.end_time,
                "user_id": Run.user_id,
            }[key]
        else:
            table: Any = {"metrics": RunLatestMetric, "params": RunParam, "tags": RunTag}[entity]
            alias = aliased(table)
            query = query.outerjoin(alias, and_(alias.run_id == Run.id, alias.key == key))
            column = alias.value
            if entity == "metrics":
                ordering.append(or_(alias.value.is_(None), alias.is_nan))
        ordering.append(column.is_(None))
        ordering.append(column.desc() if descending else column.asc())
    ordering += [Run.start_time.desc(), Run.id.asc()]
    return query, ordering


def parse_experiment_filter(text: str | None) -> list[ColumnElement[bool]]:
    """Experiment search: ``name`` (or ``attributes.name``) with the string operators."""
    if text is not None and not isinstance(text, str):
        raise _bad("filter must be a string")
    conditions = []
    for part in split_and(text) if text and text.strip() else []:
        match = _CLAUSE.match(part)
        ident = match["ident"].lower() if match else ""
        if not match or ident not in {"name", "attributes.name", "attribute.name"}:
            raise _bad(f"unsupported experiment filter {part!r}: only name comparisons are supported")
        op = re.sub(r"\s+", " ", match["op"].upper())
        if op not in STRING_OPS - {"IN", "NOT IN"}:
            raise _bad(f"operator {op} is not allowed on name")
        conditions.append(_compare(Experiment.name, op, _string(match["value"])))
    return conditions
