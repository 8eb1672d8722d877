"""How a SQL or Python product stages its data, independent of Dagster.

1. attach inputs: consumed products from their published versions, landing
   sources through shape checks and quarantine;
2. compute (SQL or Python) inside this step's DuckDB;
3. check the result's schema and write the declared columns to staging;
4. then the one write–audit–publish path every kind shares
   (:func:`dagmesh.engine.publish.audit_and_publish`): audit, publish atomically or
   leave the last good version in place.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from dagmesh.declarations.contract import Contract
from dagmesh.declarations.product import Product
from dagmesh.declarations.spec import python_spec
from dagmesh.engine.access import PortRead, read_port, refused
from dagmesh.engine.checks import check_schema
from dagmesh.engine.context import ProductContext
from dagmesh.engine.grants import Grant, denial
from dagmesh.engine.landing import (
    REJECT_REASON,
    LandingScan,
    SourceFileError,
    attach_landing,
    diagnose,
    landing_files,
    locate_value,
)
from dagmesh.engine.learning import model_files, stage_model, stage_scores
from dagmesh.engine.objectstore import duckdb_refusal
from dagmesh.engine.privacy import failure_message, owner_only, redact
from dagmesh.engine.publish import Publication, audit_and_publish
from dagmesh.engine.sql import ident, literal
from dagmesh.engine.storage import DATA_FILE, MeshStore, release_pins
from dagmesh.engine.timestamps import define_timestamp_macros
from dagmesh.errors import DagmeshError


@dataclass
class BuildResult(Publication):
    """What building one product produced: its publication, plus what its
    landing sources set aside, and for a model its holdout metrics (which
    the contract's ``metric`` rules bound) and what its version records."""

    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    source_files: int = 0
    metrics: dict[str, float] | None = None
    record: dict[str, Any] = field(default_factory=dict)


def _read_upstream(product: Product, mesh: MeshStore, run_id: str) -> dict[str, PortRead]:
    """Pin the current version of every consumed product, through access control."""
    return {
        alias: read_port(mesh.home_path, product.ref, ref, run_id, mesh)
        for alias, ref in product.consumes.items()
    }


def _attach_upstream(con: duckdb.DuckDBPyConnection, reads: dict[str, PortRead]) -> dict[str, str]:
    versions = {}
    for alias, read in reads.items():
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {ident(alias)} AS "
            f"SELECT * FROM read_parquet({literal(read.file)})"
        )
        versions[read.ref] = read.version.version
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


class ProductStepError(DagmeshError, RuntimeError):
    """A product's step failed in DuckDB or its own code; the message names
    the product and the rule, with the values withheld."""


# The value and the column a DuckDB conversion error names (the value is
# only used to find the file and line, never shown).
_QUOTED_VALUE = re.compile(r"(\"[^\"\n]*\"|'[^'\n]*')")
_SOURCE_COLUMN = re.compile(r'(?:source column|converting column) "?([A-Za-z_][A-Za-z0-9_]*)')


def _explained(
    con: duckdb.DuckDBPyConnection, product: Product, scans: list[LandingScan], error: Exception
) -> DagmeshError:
    """A step's DuckDB error as a clear one: the landing file, line and column
    holding the value it quotes when one does, else the redacted message."""
    text = str(error)
    data_error = isinstance(error, duckdb.ConversionException | duckdb.InvalidInputException)
    value = _QUOTED_VALUE.search(text.split("\n", 1)[0]) if data_error else None
    column = _SOURCE_COLUMN.search(text)
    sources = {s.alias: (product.sources[s.alias], s.files) for s in scans}
    if value and sources:
        found = locate_value(con, sources, value.group(1)[1:-1], column and column.group(1))
        if found:
            file, line, name = found
            where = f"line {line}, column {name}" if line else f"column {name}"
            return SourceFileError(
                f"{product.ref}: {file}, {where}: {redact(text)} (the value is withheld: it may "
                "be personal data)"
            )
    return ProductStepError(failure_message(product.ref, error))


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
    owner_only()
    port = mesh.port(product.domain, product.name)
    staging = port.start_staging(run_id)
    try:
        # What the step may read is settled before its DuckDB opens, and
        # DuckDB is locked to exactly that before any of its SQL runs.
        reads = _read_upstream(product, mesh, run_id)
        sources = {
            alias: landing_files(mesh.landing_path, source, product.ref)
            for alias, source in product.sources.items()
        }
        granted = [r.file for r in reads.values()] + [f for fs in sources.values() for f in fs]
        if product.scoring is not None:  # the pinned model version's files, nothing more
            granted += model_files(reads[product.scoring.alias])
        grant = mesh.step_grant(product.ref, staging, granted, run_id)
        con = mesh.connect(product.domain, grant)
        try:
            return _build(con, grant, product, mesh, run_id, log, contract, staging, reads, sources)
        except duckdb.Error as error:
            if denied := refused(error, grant):
                raise denied from error
            raise
        finally:
            con.close()
    finally:
        release_pins(mesh.home_path, run_id)  # the inputs' versions may be pruned now
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _build(
    con: duckdb.DuckDBPyConnection,
    grant: Grant,
    product: Product,
    mesh: MeshStore,
    run_id: str,
    log: logging.Logger | logging.LoggerAdapter,
    contract: Contract | None,
    staging: Path,
    reads: dict[str, PortRead],
    sources: dict[str, list[Path]],
) -> BuildResult:
    """:func:`build_product` inside the step's locked DuckDB."""
    define_timestamp_macros(con)
    inputs = _attach_upstream(con, reads)
    scans: list[LandingScan] = []
    try:
        for alias, files in sources.items():
            source = product.sources[alias]
            quarantine = staging / "quarantine"
            scans.append(
                attach_landing(
                    con, product.ref, alias, source, mesh.landing_path, quarantine, files
                )
            )
        ctx = ProductContext(product, con, run_id, mesh.domain_dir(product.domain), log, grant)
        result = _stage(ctx, staging, scans, inputs, reads, mesh.model_threads)
        if result.outcomes and not result.outcomes[0].passed:
            return result
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
            extra={"quarantined": result.quarantined, **result.record},
            metrics=result.metrics,
        )
    except duckdb.Error as error:
        if denial(str(error)) is not None or duckdb_refusal(str(error)) is not None:
            raise  # the grant or the store refused it: build_product names product and path
        # DuckDB quotes the values it choked on: name where, never what.
        raise _explained(con, product, scans, error) from None


def _stage(
    ctx: ProductContext,
    staging: Path,
    scans: list[LandingScan],
    inputs: dict[str, str],
    reads: dict[str, PortRead],
    threads: int | None = None,
) -> BuildResult:
    """Compute the product and write its declared columns to staging, once
    its schema checks out (the result's first outcome). A model product
    trains and stages its model; a scoring product scores with the pinned
    model version (its drift check is a further, non-blocking outcome);
    both with ``threads`` for scikit-learn."""
    product = ctx.product
    spec = python_spec(product)
    try:
        if product.training is not None:
            staged = stage_model(ctx, staging, threads)
            return BuildResult(spec, inputs=inputs, metrics=staged.metrics, record=staged.record)
        drift, record = None, {}
        if product.scoring is not None:
            relation, drift, record = stage_scores(
                ctx, reads[product.scoring.alias], staging, threads
            )
        else:
            relation = _compute(ctx)
        # Before writing: a missing column would fail the write below.
        schema = check_schema(spec, relation.columns, [str(t) for t in relation.types])
        result = BuildResult(spec, [schema], inputs=inputs, record=record)
        if drift is not None:
            result.outcomes.append(drift)
        if schema.passed:
            columns = ", ".join(ident(c.name) for c in product.columns)
            relation.select(columns).write_parquet(str(staging / DATA_FILE), compression="zstd")
        return result
    except duckdb.Error as error:
        if denial(str(error)) is None:
            for scan in scans:
                diagnose(ctx.con, product.ref, product.sources[scan.alias], scan.files)
        raise
