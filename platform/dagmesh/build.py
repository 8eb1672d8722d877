"""Write–audit–publish of one product, independent of Dagster.

1. attach inputs: consumed products from their published versions, landing
   sources through shape checks and quarantine;
2. compute (SQL or Python) inside this step's DuckDB;
3. write the declared columns to a staging Parquet file;
4. audit the staged data (schema, not-null, primary key);
5. publish atomically, or discard the staging folder and leave the last good
   version in place.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dagmesh.access import read_port
from dagmesh.audit import AuditOutcome, audit_staged, check_schema, masked_select
from dagmesh.context import ProductContext
from dagmesh.contracts.checks import run_quality_rules
from dagmesh.contracts.model import Contract
from dagmesh.landing import REJECT_REASON, attach_landing, diagnose
from dagmesh.product import Product
from dagmesh.publish import publish_staged
from dagmesh.spec import python_spec
from dagmesh.sql import ident, literal
from dagmesh.storage import DATA_FILE, MeshStore

PREVIEW_ROWS = 5


@dataclass
class BuildResult:
    """What building one product produced."""

    product: Product
    outcomes: list[AuditOutcome]
    version: str | None = None
    rows: int = 0
    inputs: dict[str, str] = field(default_factory=dict)
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    source_files: int = 0
    preview: list[dict[str, str]] = field(default_factory=list)
    port_file: str | None = None

    @property
    def published(self) -> bool:
        """True when the new version became the output port."""
        return self.version is not None

    @property
    def blocked(self) -> bool:
        """True when a blocking audit failed."""
        return any(not o.passed and o.blocking for o in self.outcomes)

    @property
    def failure_message(self) -> str:
        """Every blocking violation, one per line."""
        return "\n".join(
            v for o in self.outcomes if not o.passed and o.blocking for v in o.violations
        )


def _attach_upstream(
    con: duckdb.DuckDBPyConnection, product: Product, mesh: MeshStore, run_id: str
) -> dict[str, str]:
    versions = {}
    for alias, ref in product.consumes.items():
        read = read_port(mesh.home_path, product.ref, ref, run_id)
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {ident(alias)} AS "
            f"SELECT * FROM read_parquet({literal(read.file)})"
        )
        versions[ref] = read.version.version
    return versions


def _compute(ctx: ProductContext) -> duckdb.DuckDBPyRelation:
    product = ctx.product
    if product.sql is not None:
        return ctx.con.sql(product.sql)
    result = product.compute(ctx)
    if isinstance(result, duckdb.DuckDBPyRelation):
        return result
    if result is None:
        raise TypeError(f"{product.ref}: the compute function returned nothing")
    # pandas DataFrame or pyarrow Table: let DuckDB scan it in place.
    ctx.con.register("__python_result", result)
    return ctx.con.table("__python_result")


def _quarantine_counts(con: duckdb.DuckDBPyConnection, scans) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for scan in scans:
        if scan.quarantine_file is None:
            continue
        rows = con.sql(
            f"SELECT {REJECT_REASON}, count(*) FROM read_parquet({literal(scan.quarantine_file)}) "
            f"GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        counts[scan.alias] = {reason: n for reason, n in rows}
    return counts


def preview_rows(
    con: duckdb.DuckDBPyConnection, data_file: Path | str, personal: Collection[str]
) -> list[dict[str, str]]:
    """The first rows of a published file as text, the ``personal`` columns masked."""
    rel = con.sql(f"SELECT * FROM read_parquet({literal(data_file)}) LIMIT {PREVIEW_ROWS}")
    shown = rel.select(masked_select(rel.columns, personal))
    return [
        {c: "NULL" if v is None else v for c, v in zip(shown.columns, row, strict=True)}
        for row in shown.fetchall()
    ]


def build_product(
    product: Product,
    mesh: MeshStore,
    run_id: str,
    log: logging.Logger | logging.LoggerAdapter | None = None,
    contract: Contract | None = None,
) -> BuildResult:
    """Compute, stage, audit and (if every blocking audit passes) publish one
    product; ``contract`` adds its quality rules to the audit."""
    log = log or logging.getLogger("dagmesh")
    port = mesh.port(product.domain, product.name)
    staging = port.start_staging(run_id)
    con = mesh.connect(product.domain)
    try:
        inputs = _attach_upstream(con, product, mesh, run_id)
        scans = [
            attach_landing(
                con, product.ref, alias, source, mesh.landing_path, staging / "quarantine"
            )
            for alias, source in product.sources.items()
        ]
        ctx = ProductContext(product, con, run_id, mesh.domain_dir(product.domain), log)
        try:
            relation = _compute(ctx)
            schema = check_schema(product, relation.columns, [str(t) for t in relation.types])
            result = BuildResult(product, [schema], inputs=inputs)
            if not schema.passed:
                return result
            data_file = staging / DATA_FILE
            columns = ", ".join(ident(c.name) for c in product.columns)
            relation.select(columns).write_parquet(str(data_file), compression="zstd")
        except duckdb.Error:
            for scan in scans:
                diagnose(con, product.ref, product.sources[scan.alias], scan.files)
            raise
        result.rows = con.execute(
            f"SELECT count(*) FROM read_parquet({literal(data_file)})"
        ).fetchall()[0][0]
        spec = python_spec(product)
        result.outcomes += audit_staged(con, product, data_file, result.rows)
        result.outcomes += run_quality_rules(
            con,
            product.ref,
            contract,
            f"read_parquet({literal(data_file)})",
            result.rows,
            [c.name for c in product.columns],
            spec.personal,
        )
        result.quarantined = _quarantine_counts(con, scans)
        result.source_files = sum(len(s.files) for s in scans)
        if result.blocked:
            return result
        record = {
            "rows": result.rows,
            "columns": {c.name: c.type for c in product.columns},
            "inputs": inputs,
            "quarantined": result.quarantined,
            "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        result.version = publish_staged(con, mesh, staging, run_id, record, spec, contract)
        current = port.require_current()
        result.port_file = str(port.current_link / DATA_FILE)
        result.preview = preview_rows(con, current.owner_file, spec.personal)
        return result
    finally:
        con.close()
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
