"""How a SQL or Python product stages its data, independent of Dagster.

1. attach inputs: consumed products from their published versions, landing
   sources through shape checks and quarantine;
2. compute (SQL or Python) inside this step's DuckDB;
3. check the result's schema and write the declared columns to staging;
4. then the one write–audit–publish path every kind shares
   (:func:`dagmesh.publish.audit_and_publish`): audit, publish atomically or
   leave the last good version in place.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field

import duckdb

from dagmesh.access import read_port
from dagmesh.audit import check_schema
from dagmesh.context import ProductContext
from dagmesh.contracts.model import Contract
from dagmesh.landing import REJECT_REASON, attach_landing, diagnose
from dagmesh.product import Product
from dagmesh.publish import Publication, audit_and_publish
from dagmesh.spec import python_spec
from dagmesh.sql import ident, literal
from dagmesh.storage import DATA_FILE, MeshStore, release_pins


@dataclass
class BuildResult(Publication):
    """What building one SQL or Python product produced: its publication,
    plus what its landing sources set aside."""

    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    source_files: int = 0


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
        spec = python_spec(product)
        try:
            relation = _compute(ctx)
            # Before writing: a missing column would fail the write below.
            schema = check_schema(spec, relation.columns, [str(t) for t in relation.types])
            result = BuildResult(spec, [schema], inputs=inputs)
            if not schema.passed:
                return result
            columns = ", ".join(ident(c.name) for c in product.columns)
            relation.select(columns).write_parquet(str(staging / DATA_FILE), compression="zstd")
        except duckdb.Error:
            for scan in scans:
                diagnose(con, product.ref, product.sources[scan.alias], scan.files)
            raise
        result.quarantined = _quarantine_counts(con, scans)
        result.source_files = sum(len(s.files) for s in scans)
        return audit_and_publish(
            con,
            mesh,
            result,
            contract,
            staging,
            run_id,
            column_types={c.name: c.type for c in product.columns},
            extra={"quarantined": result.quarantined},
        )
    finally:
        con.close()
        release_pins(mesh.home_path, run_id)  # the inputs' versions may be pruned now
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
