"""Turning a product description into a Dagster asset."""

import json
import warnings
from collections.abc import Iterator

import dagster as dg

from dagmesh.audit import audit_checks
from dagmesh.build import BuildResult, UpstreamNotPublishedError, build_product
from dagmesh.landing import SourceFileError
from dagmesh.product import Product
from dagmesh.resources import MeshStorage

TAG_PREFIX = "dagmesh"


def column_schema(product: Product) -> dg.TableSchema:
    """The product's columns as Dagster's ``dagster/column_schema``."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.type,
                description=c.description,
                constraints=dg.TableColumnConstraints(
                    nullable=c.nullable and c.name not in product.primary_key,
                    unique=product.primary_key == [c.name],
                ),
                tags={"classification": c.classification} if c.classification else None,
            )
            for c in product.columns
        ]
    )


def _definition_metadata(product: Product) -> dict[str, object]:
    metadata: dict[str, object] = {
        "dagster/column_schema": column_schema(product),
        "dagmesh/product": product.ref,
        "dagmesh/access": product.access,
        "dagmesh/consumes": json.dumps(sorted(product.consumes.values())),
    }
    if product.primary_key:
        metadata["dagmesh/primary_key"] = ", ".join(product.primary_key)
    if product.defined_at:
        path, line = product.defined_at
        with warnings.catch_warnings():
            # Code references are beta in Dagster 1.13; the UI supports them fully.
            warnings.simplefilter("ignore", category=dg.BetaWarning)
            metadata["dagster/code_references"] = dg.CodeReferencesMetadataValue(
                code_references=[dg.LocalFileCodeReference(file_path=path, line_number=line)]
            )
    return metadata


def _materialization_metadata(result: BuildResult) -> dict[str, object]:
    metadata: dict[str, object] = {
        "dagster/row_count": result.rows,
        "dagmesh/version": result.version,
        "dagmesh/port": dg.MetadataValue.path(result.port_file),
        "dagmesh/inputs": dg.MetadataValue.json(result.inputs),
    }
    if result.product.sources:
        metadata["dagmesh/source_files"] = result.source_files
        metadata["dagmesh/quarantined_rows"] = sum(
            n for reasons in result.quarantined.values() for n in reasons.values()
        )
        metadata["dagmesh/quarantine"] = dg.MetadataValue.json(result.quarantined)
    if result.preview:
        metadata["preview"] = preview_table(result.preview)
    return metadata


def preview_table(rows: list[dict[str, str]]) -> dg.TableMetadataValue:
    """Preview rows (from :func:`dagmesh.build.preview_rows`) as a Dagster table."""
    columns = list(rows[0]) if rows else []
    return dg.MetadataValue.table(
        records=[dg.TableRecord(row) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]),
    )


def product_asset(product: Product) -> dg.AssetsDefinition:
    """The Dagster asset of a product: key ``[domain, name]``, deps on what it
    consumes, blocking audit checks, and write–audit–publish as its body."""
    key = dg.AssetKey(product.key_path)
    check_specs = [
        dg.AssetCheckSpec(name, asset=key, blocking=True, description=description)
        for name, description in audit_checks(product).items()
    ]
    tags = {f"{TAG_PREFIX}/domain": product.domain, f"{TAG_PREFIX}/access": product.access}
    if any(c.is_pii for c in product.columns):
        tags[f"{TAG_PREFIX}/pii"] = "true"
    tags.update(product.tags)

    @dg.asset(
        key=key,
        deps=[dg.AssetKey(ref.split("/")) for ref in product.consumes.values()],
        description=product.description,
        group_name=product.domain,
        owners=[f"team:{product.owner}"],
        kinds={"duckdb", "parquet", product.kind},
        tags=tags,
        metadata=_definition_metadata(product),
        check_specs=check_specs,
    )
    def _product(
        context: dg.AssetExecutionContext, mesh: MeshStorage
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        try:
            result = build_product(product, mesh, context.run_id, context.log)
        except (SourceFileError, UpstreamNotPublishedError) as error:
            # A clear message for the run's failure, not a stack trace wrapper.
            raise dg.Failure(description=str(error)) from error
        checks = [
            dg.AssetCheckResult(
                check_name=o.check,
                asset_key=key,
                passed=o.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description="; ".join(o.violations) or o.description,
                metadata=o.metadata,
            )
            for o in result.outcomes
        ]
        ran = {o.check for o in result.outcomes}
        if not result.published:
            yield from checks
            raise dg.Failure(
                description=f"{product.ref} was not published; the last good version stays "
                f"in place.\n{result.failure_message}",
                metadata={"skipped_checks": sorted(set(audit_checks(product)) - ran)},
            )
        yield dg.MaterializeResult(
            asset_key=key, metadata=_materialization_metadata(result), check_results=checks
        )

    return _product
