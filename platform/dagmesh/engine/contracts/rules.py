"""A contract's quality rules, run on a staged product before it is published.

Each rule becomes one Dagster asset check; ``severity: error`` rules are
blocking (a failure keeps the last good version published), ``warning``
rules are reported and publish anyway.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

import duckdb

from dagmesh.declarations.contract import (
    BOUNDS,
    LIBRARY_RULES,
    MODEL_METRICS,
    Contract,
    QualityRule,
)
from dagmesh.engine.checks import SAMPLE_ROWS, AuditOutcome, masked_select
from dagmesh.engine.sql import ident, literal

OBJECT = "${object}"
DEFAULT_EXPECTATION = {"validValues": 0, "nullCheck": 0, "duplicateCount": 0}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def check_name(column: str | None, rule: QualityRule, position: int) -> str:
    """The asset check name of a rule: its ``name``, else ``<column>_<rule>``
    (``status_valid_values``, ``row_count``, ``sql_2``)."""
    if rule.name:
        return re.sub(r"[^a-z0-9_]", "_", rule.name.lower())
    if rule.type == "library" and rule.rule == "metric" and rule.metric:
        return re.sub(r"[^a-z0-9_]", "_", f"metric_{rule.metric}".lower())
    base = _snake(rule.rule) if rule.type == "library" and rule.rule else f"{rule.type}_{position}"
    return f"{column}_{base}" if column else base


def rule_problems(column: str | None, rule: QualityRule) -> list[str]:
    """What makes a rule unusable (unknown rule, missing bound or query)."""
    problems = []
    if rule.type == "library":
        if rule.rule not in LIBRARY_RULES:
            problems.append(f"unknown library rule {rule.rule!r} (known: {list(LIBRARY_RULES)})")
        elif rule.rule in ("rowCount", "metric") and column is not None:
            problems.append(f"{rule.rule} is a table rule: put it under the schema's quality")
        elif rule.rule not in ("rowCount", "metric") and column is None:
            problems.append(f"{rule.rule} is a column rule: put it under the column's quality")
        if rule.rule == "validValues" and not rule.validValues:
            problems.append("validValues needs the list of validValues")
        if rule.rule in ("rowCount", "metric") and not _bounds(rule):
            problems.append(f"{rule.rule} needs a bound (mustBeBetween, mustBeGreaterThan...)")
        if rule.rule == "metric" and rule.metric not in MODEL_METRICS:
            problems.append(
                f"metric {rule.metric!r} is not a model metric (known: {list(MODEL_METRICS)})"
            )
    elif rule.type == "sql":
        if not rule.query or OBJECT not in rule.query:
            problems.append(f"a sql rule needs a query over {OBJECT}")
        if not _bounds(rule):
            problems.append("a sql rule needs a bound (mustBe, mustBeLessThan...)")
    return problems


def quality_checks(contract: Contract | None) -> dict[str, tuple[str, bool]]:
    """Check name → (description, blocking) for every runnable rule."""
    if contract is None:
        return {}
    checks = {}
    for position, (column, rule) in enumerate(contract.quality_rules(), start=1):
        if rule.type not in ("library", "sql") or rule_problems(column, rule):
            continue
        what = rule.description or _describe(column, rule)
        checks[check_name(column, rule, position)] = (what, rule.blocking)
    return checks


def _describe(column: str | None, rule: QualityRule) -> str:
    subject = f"column {column!r}" if column else "the product"
    if rule.rule == "validValues":
        return f"{subject} only holds {rule.validValues}"
    bounds = ", ".join(f"{k} {v}" for k, v in _bounds(rule).items())
    if rule.rule == "metric":
        return f"the model's holdout {rule.metric}: {bounds}"
    return f"{subject}: {rule.rule or 'sql'} {bounds or 'must be 0'}"


def _bounds(rule: QualityRule) -> dict[str, Any]:
    return {k: getattr(rule, k) for k in BOUNDS if getattr(rule, k) is not None}


def _holds(value: float, bound: str, target: Any) -> bool:
    if bound == "mustBe":
        return value == target
    if bound == "mustNotBe":
        return value != target
    if bound == "mustBeGreaterThan":
        return value > target
    if bound == "mustBeGreaterOrEqualTo":
        return value >= target
    if bound == "mustBeLessThan":
        return value < target
    if bound == "mustBeLessOrEqualTo":
        return value <= target
    low, high = target
    inside = low <= value <= high
    return inside if bound == "mustBeBetween" else not inside


class NotAModelError(ValueError):
    """A ``metric`` rule on a product that trains no model."""


def _metric(
    con: duckdb.DuckDBPyConnection,
    column: str | None,
    rule: QualityRule,
    data: str,
    rows: int,
    metrics: Mapping[str, float] | None = None,
) -> tuple[float, str | None]:
    """The rule's measured value and, for row rules, the predicate of failing rows."""
    if rule.rule == "metric":
        if metrics is None or rule.metric not in metrics:
            raise NotAModelError(rule.metric)
        return float(metrics[rule.metric]), None
    if rule.type == "sql":
        query = rule.query.replace(OBJECT, data)
        found = con.execute(query).fetchall()
        return (float(found[0][0]) if found and found[0][0] is not None else 0.0), None
    if rule.rule == "rowCount":
        return float(rows), None
    col = ident(column)
    if rule.rule == "validValues":
        values = ", ".join(literal(v) for v in rule.validValues)
        where = f"{col} IS NOT NULL AND {col}::VARCHAR NOT IN ({values})"
    elif rule.rule == "nullCheck":
        where = f"{col} IS NULL"
    else:  # duplicateCount
        where = f"{col} IN (SELECT {col} FROM {data} GROUP BY {col} HAVING count(*) > 1)"
    count = con.execute(f"SELECT count(*) FROM {data} WHERE {where}").fetchall()[0][0]
    return float(count), where


def run_quality_rules(
    con: duckdb.DuckDBPyConnection,
    ref: str,
    contract: Contract | None,
    data: str,
    rows: int,
    columns: list[str],
    personal: Collection[str],
    metrics: Mapping[str, float] | None = None,
) -> list[AuditOutcome]:
    """Evaluate every runnable rule of ``contract`` over ``data`` (a relation
    expression such as ``read_parquet('...')``) holding ``rows`` rows;
    ``metric`` rules over ``metrics`` (a model product's evaluation; a metric
    rule on any other product fails, naming the rule)."""
    if contract is None:
        return []
    outcomes = []
    for position, (column, rule) in enumerate(contract.quality_rules(), start=1):
        if rule.type not in ("library", "sql") or rule_problems(column, rule):
            continue
        name = check_name(column, rule, position)
        try:
            value, where = _metric(con, column, rule, data, rows, metrics)
        except NotAModelError:
            outcomes.append(_not_a_model(ref, name, rule))
            continue
        bounds = _bounds(rule) or {"mustBe": DEFAULT_EXPECTATION.get(rule.rule or "", 0)}
        failed = [f"{b} {t}" for b, t in bounds.items() if not _holds(value, b, t)]
        violations = []
        if failed:
            rule_name = rule.rule or f"sql rule {name}"
            subject = f"column {column!r}" if column else "table"
            measured = f"{int(value) if value.is_integer() else value}"
            text = (
                f"{ref}: {subject} violates {rule_name} ({name}): measured {measured}, "
                f"expected {' and '.join(failed)}"
            )
            if rule.rule == "validValues":
                text += f" (allowed: {rule.validValues})"
            if where:
                shown = masked_select(columns, personal)
                sample = con.execute(
                    f"SELECT {shown} FROM {data} WHERE {where} LIMIT {SAMPLE_ROWS}"
                ).fetchall()
                shown_rows = [dict(zip(columns, r, strict=True)) for r in sample]
                text += f"; failing rows (personal data masked): {shown_rows}"
            violations.append(text)
        outcomes.append(
            AuditOutcome(
                name,
                not failed,
                rule.description or _describe(column, rule),
                violations,
                {"measured": value, "severity": rule.severity},
                blocking=rule.blocking,
            )
        )
    return outcomes


def _not_a_model(ref: str, name: str, rule: QualityRule) -> AuditOutcome:
    """The failed outcome of a metric rule on a product with no such metric."""
    text = (
        f"{ref}: metric rule {name} bounds {rule.metric!r}, but this product trains no model "
        "that measures it (metric rules belong to model products)"
    )
    return AuditOutcome(
        name,
        False,
        _describe(None, rule),
        [text],
        {"severity": rule.severity},
        blocking=rule.blocking,
    )
