"""The audit step of write–audit–publish: blocking checks on a staged product.

Each rule gives an :class:`AuditOutcome`; a failing one stops publication and
its message names the product, the column, the rule and a sample of the
failing rows (personal data masked).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from dagmesh.declarations.spec import ProductSpec
from dagmesh.engine.sql import ident, literal

MASK = "***"
SAMPLE_ROWS = 3


@dataclass
class AuditOutcome:
    """The result of one audit rule on one product."""

    check: str
    passed: bool
    description: str
    violations: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    blocking: bool = True


def normalize_type(type_name: str) -> str:
    """DuckDB's canonical spelling of a type (``TIMESTAMPTZ`` → ``TIMESTAMP WITH TIME ZONE``)."""
    try:
        return str(duckdb.sqltype(type_name))
    except duckdb.Error:
        return type_name.upper()


def check_schema(spec: ProductSpec, columns: list[str], types: list[str]) -> AuditOutcome:
    """The result has every column the spec types, with that type."""
    return check_columns(
        spec.ref, [(c.name, c.type) for c in spec.columns if c.type], columns, types
    )


def check_columns(
    ref: str, declared: list[tuple[str, str]], columns: list[str], types: list[str]
) -> AuditOutcome:
    """Every ``declared`` (name, type) is among the result's ``columns`` with
    that type (DuckDB's spelling of both compared)."""
    found = dict(zip(columns, types, strict=True))
    violations = []
    for name, type_name in declared:
        if name not in found:
            violations.append(
                f"{ref}: column {name!r} violates schema: missing from the result "
                f"(result columns: {columns})"
            )
        elif normalize_type(found[name]) != normalize_type(type_name):
            violations.append(
                f"{ref}: column {name!r} violates schema: type is "
                f"{found[name]}, the product declares {type_name}"
            )
    return AuditOutcome(
        "schema",
        not violations,
        "declared columns present with declared types",
        violations,
        {"columns_checked": len(declared)},
    )


def masked_select(columns: Iterable[str], personal: Collection[str]) -> str:
    """A select list of ``columns`` as text, those in ``personal`` masked:
    what may be shown in error messages and previews."""
    return ", ".join(
        f"{literal(MASK)} AS {ident(c)}" if c in personal else f"{ident(c)}::VARCHAR AS {ident(c)}"
        for c in columns
    )


def _sample(
    con: duckdb.DuckDBPyConnection, spec: ProductSpec, data: str, where: str
) -> list[dict[str, Any]]:
    shown = masked_select([c.name for c in spec.columns], spec.personal)
    rel = con.sql(f"SELECT {shown} FROM {data} WHERE {where} LIMIT {SAMPLE_ROWS}")
    return [dict(zip(rel.columns, map(str, row), strict=True)) for row in rel.fetchall()]


def check_not_null(
    con: duckdb.DuckDBPyConnection, spec: ProductSpec, data: str, rows: int
) -> AuditOutcome | None:
    """Required columns (``nullable=False`` and primary key) hold no NULLs."""
    required = [c.name for c in spec.columns if c.required]
    if not required:
        return None
    counts = con.execute(
        "SELECT "
        + ", ".join(f"count(*) FILTER (WHERE {ident(c)} IS NULL)" for c in required)
        + f" FROM {data}"
    ).fetchall()[0]
    violations = []
    for column, nulls in zip(required, counts, strict=True):
        if nulls:
            sample = _sample(con, spec, data, f"{ident(column)} IS NULL")
            violations.append(
                f"{spec.ref}: column {column!r} violates not_null: {nulls} of {rows} rows "
                f"are NULL; sample: {sample}"
            )
    return AuditOutcome(
        "not_null",
        not violations,
        f"no NULLs in {required}",
        violations,
        {"columns": required},
    )


def check_primary_key(
    con: duckdb.DuckDBPyConnection, spec: ProductSpec, data: str, rows: int
) -> AuditOutcome | None:
    """The primary key identifies every row once."""
    if not spec.primary_key:
        return None
    key = ", ".join(ident(c) for c in spec.primary_key)
    duplicated = con.execute(
        f"SELECT count(*), coalesce(sum(n), 0) FROM "
        f"(SELECT count(*) AS n FROM {data} GROUP BY {key} HAVING count(*) > 1)"
    ).fetchall()[0]
    violations = []
    if duplicated[0]:
        where = f"({key}) IN (SELECT ({key}) FROM {data} GROUP BY {key} HAVING count(*) > 1)"
        sample = _sample(con, spec, data, where)
        violations.append(
            f"{spec.ref}: column {'+'.join(spec.primary_key)!r} violates primary_key: "
            f"{duplicated[0]} key values occur more than once ({duplicated[1]} of {rows} rows); "
            f"sample: {sample}"
        )
    return AuditOutcome(
        "primary_key",
        not violations,
        f"{spec.primary_key} is unique",
        violations,
        {"duplicate_keys": int(duplicated[0])},
    )


def row_audits(
    con: duckdb.DuckDBPyConnection, spec: ProductSpec, data: str, rows: int
) -> list[AuditOutcome]:
    """The platform's row-level audits a product declares (not-null, primary
    key) over the staged data; dbt models have dbt's tests instead."""
    if not spec.row_audits:
        return []
    outcomes = [
        check_not_null(con, spec, data, rows),
        check_primary_key(con, spec, data, rows),
    ]
    return [o for o in outcomes if o is not None]


def audit_checks(spec: ProductSpec) -> dict[str, str]:
    """The platform's audit checks of a product (one blocking Dagster asset
    check each), by name, with what each one guarantees."""
    checks = {}
    if any(c.type for c in spec.columns):
        checks["schema"] = "Declared columns are present with their declared types."
    if spec.row_audits and any(c.required for c in spec.columns):
        checks["not_null"] = "Required and primary-key columns hold no NULLs."
    if spec.row_audits and spec.primary_key:
        checks["primary_key"] = f"{spec.primary_key} identifies each row once."
    return checks
