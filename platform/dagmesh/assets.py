"""Turning a product description into a Dagster asset."""

import json
import warnings
from collections.abc import Iterator

import dagster as dg

from dagmesh.access import AccessDeniedError, UpstreamNotPublishedError
from dagmesh.alerts import Alert, send_alert
from dagmesh.audit import AuditOutcome, audit_checks
from dagmesh.build import BuildResult, build_product
from dagmesh.contracts.checks import quality_checks
from dagmesh.contracts.model import Contract
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


def _definition_metadata(product: Product, contract: Contract | None) -> dict[str, object]:
    metadata: dict[str, object] = {
        "dagster/column_schema": column_schema(product),
        "dagmesh/product": product.ref,
        "dagmesh/access": product.access,
        "dagmesh/consumes": json.dumps(sorted(product.consumes.values())),
    }
    metadata.update(contract_metadata(contract))
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


def contract_metadata(contract: Contract | None) -> dict[str, object]:
    """What the catalog shows of a product's contract."""
    if contract is None:
        return {}
    metadata: dict[str, object] = {
        "dagmesh/contract_version": contract.version,
        "dagmesh/contract_status": contract.status,
    }
    if contract.freshness:
        metadata["dagmesh/freshness_sla"] = str(contract.freshness)
    if deprecation := contract.deprecation:
        metadata["dagmesh/deprecated"] = f"sunset {deprecation[0]}" + (
            f", use {deprecation[1]}" if deprecation[1] else ""
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


def freshness_policy(contract: Contract | None) -> dg.FreshnessPolicy | None:
    """The contract's latency SLA as Dagster's freshness policy (warned at
    80 % of the window, failed past it)."""
    window = contract.freshness if contract else None
    if window is None:
        return None
    return dg.FreshnessPolicy.time_window(fail_window=window, warn_window=window * 0.8)


def check_specs(
    key: dg.AssetKey, builtin: dict[str, str], contract: Contract | None
) -> list[dg.AssetCheckSpec]:
    """The platform's built-in audits (blocking) and the contract's quality rules."""
    specs = [
        dg.AssetCheckSpec(name, asset=key, blocking=True, description=description)
        for name, description in builtin.items()
    ]
    specs += [
        dg.AssetCheckSpec(name, asset=key, blocking=blocking, description=description)
        for name, (description, blocking) in quality_checks(contract).items()
        if name not in builtin
    ]
    return specs


def check_result(key: dg.AssetKey, outcome: AuditOutcome) -> dg.AssetCheckResult:
    """An audit outcome as the Dagster check result of ``key`` (WARN when
    the rule does not block publication)."""
    return dg.AssetCheckResult(
        check_name=outcome.check,
        asset_key=key,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
        description="; ".join(outcome.violations) or outcome.description,
        metadata=outcome.metadata,
    )


def alert_blocked(ref: str, message: str, run_id: str) -> None:
    """Send the alert of a publication stopped by a blocking check."""
    send_alert(Alert("check_failure", ref, message, {"run_id": run_id}))


def product_asset(product: Product, contract: Contract | None = None) -> dg.AssetsDefinition:
    """The Dagster asset of a product: key ``[domain, name]``, deps on what it
    consumes, blocking audit checks and the contract's quality rules, its
    freshness SLA, and write–audit–publish as its body."""
    key = dg.AssetKey(product.key_path)
    builtin = audit_checks(product)
    specs = check_specs(key, builtin, contract)
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
        metadata=_definition_metadata(product, contract),
        check_specs=specs,
        freshness_policy=freshness_policy(contract),
        automation_condition=product.automation,
    )
    def _product(
        context: dg.AssetExecutionContext, mesh: MeshStorage
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        try:
            result = build_product(product, mesh.store(), context.run.run_id, context.log, contract)
        except (SourceFileError, UpstreamNotPublishedError, AccessDeniedError) as error:
            # A clear message for the run's failure, not a stack trace wrapper.
            raise dg.Failure(description=str(error)) from error
        checks = [check_result(key, o) for o in result.outcomes]
        ran = {o.check for o in result.outcomes}
        if not result.published:
            yield from checks
            message = (
                f"{product.ref} was not published; the last good version stays in place.\n"
                f"{result.failure_message}"
            )
            alert_blocked(product.ref, message, context.run.run_id)
            raise dg.Failure(
                description=message,
                metadata={"skipped_checks": sorted({s.name for s in specs} - ran)},
            )
        yield dg.MaterializeResult(
            asset_key=key, metadata=_materialization_metadata(result), check_results=checks
        )

    return _product
