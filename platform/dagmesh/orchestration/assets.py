"""Turning a product description into a Dagster asset."""

import dataclasses
import json
import warnings
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import dagster as dg
import yaml

from dagmesh import config
from dagmesh.declarations.contract import Contract
from dagmesh.declarations.product import Product
from dagmesh.declarations.spec import python_spec
from dagmesh.engine.build import BuildResult, build_product
from dagmesh.engine.checks import audit_checks
from dagmesh.engine.contracts.rules import quality_checks
from dagmesh.engine.learning import DRIFT_CHECK, model_threads
from dagmesh.engine.privacy import failure_message
from dagmesh.errors import DagmeshError
from dagmesh.orchestration.resources import MeshStorage
from dagmesh.orchestration.results import (
    alert_blocked,
    check_result,
    column_schema,
    publication_metadata,
)

TAG_PREFIX = "dagmesh"


def _definition_metadata(product: Product, contract: Contract | None) -> dict[str, object]:
    metadata: dict[str, object] = {
        "dagster/column_schema": column_schema(python_spec(product)),
        "dagmesh/product": product.ref,
        "dagmesh/access": product.access,
        "dagmesh/consumes": json.dumps(sorted(product.consumes.values())),
        MATERIALIZE_LINK: materialize_with_upstream_link(product.ref),
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


MATERIALIZE_LINK = "dagmesh/materialize_with_upstream"
MATERIALIZE_LABEL = "Materialize with upstream across domains"


def materialize_with_upstream_link(ref: str) -> dg.MarkdownMetadataValue:
    """The UI's one action that materializes ``ref`` with its upstream across
    domains: a link on the product's page to the launchpad of the platform's
    job (location :data:`~dagmesh.config.MESH_LOCATION`) with this product
    and ``with_upstream: true`` filled in; Launch Run starts it. The UI's
    ``.../playground/setup`` route (``LaunchpadSetupRoot``) opens a new
    launchpad tab with its ``config`` query parameter as the run config.
    Markdown, so the page shows a named link (a URL value would show the
    whole encoded URL) that opens in the same tab; a path on the UI's own
    host, so it works wherever the UI is served (not under a
    ``--path-prefix``)."""
    request = {"products": [ref], "with_upstream": True}
    run_config = yaml.safe_dump({"ops": {config.MESH_OP: {"config": request}}}, sort_keys=False)
    path = f"/locations/{config.MESH_LOCATION}/jobs/{config.MESH_JOB}/playground/setup"
    url = f"{path}?{urlencode({'config': run_config}, quote_via=quote)}"
    return dg.MetadataValue.md(f"[{MATERIALIZE_LABEL}]({url})")


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


def _kinds(product: Product) -> set[str]:
    if product.training is not None or product.scoring is not None:
        return {"duckdb", "parquet", "scikitlearn", product.kind}
    return {"duckdb", "parquet", product.kind}


def _model_metadata(result: BuildResult) -> dict[str, object]:
    """What the UI shows of a model's version: its holdout metrics, training
    rows and features; of a scoring product, the model version it used."""
    metadata: dict[str, object] = {}
    record = result.record
    for name, value in (result.metrics or {}).items():
        metadata[f"dagmesh/metric/{name}"] = int(value) if name.endswith("_rows") else value
    if result.metrics:
        metadata["dagmesh/training_rows"] = int(result.metrics["training_rows"])
        metadata["dagmesh/features"] = dg.MetadataValue.json(record.get("features", {}))
        metadata["dagmesh/holdout"] = dg.MetadataValue.json(record.get("holdout", {}))
    if "model_version" in record:
        metadata["dagmesh/model"] = record["model"]
        metadata["dagmesh/model_version"] = record["model_version"]
        metadata["dagmesh/feature_psi"] = dg.MetadataValue.json(record.get("drift", {}))
    return metadata


def _materialization_metadata(product: Product, result: BuildResult) -> dict[str, object]:
    metadata = publication_metadata(result)
    metadata.update(_model_metadata(result))
    if product.sources:
        metadata["dagmesh/source_files"] = result.source_files
        metadata["dagmesh/quarantined_rows"] = sum(
            n for reasons in result.quarantined.values() for n in reasons.values()
        )
        metadata["dagmesh/quarantine"] = dg.MetadataValue.json(result.quarantined)
    return metadata


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


def _product_checks(
    product: Product, key: dg.AssetKey, contract: Contract | None
) -> list[dg.AssetCheckSpec]:
    """The product's blocking audits and contract rules, and for a scoring
    product its drift warning."""
    specs = check_specs(key, audit_checks(python_spec(product)), contract)
    if product.scoring is not None:
        specs.append(
            dg.AssetCheckSpec(
                DRIFT_CHECK,
                asset=key,
                blocking=False,
                description=f"Population stability of the scoring input vs "
                f"{product.scoring.model}'s training data (warns, never blocks).",
            )
        )
    return specs


def _tags(product: Product) -> dict[str, str]:
    """The product's domain, access and PII tags, then its own."""
    tags = {f"{TAG_PREFIX}/domain": product.domain, f"{TAG_PREFIX}/access": product.access}
    if any(c.is_pii for c in product.columns):
        tags[f"{TAG_PREFIX}/pii"] = "true"
    return {**tags, **product.tags}


def runs_going(instance: dg.DagsterInstance) -> int:
    """Runs executing steps now, the asking one included (at least 1): the
    mesh's own cross-domain run only waits for its domain runs, so it is
    not counted."""
    runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    return max(1, sum(1 for run in runs if run.job_name != config.MESH_JOB))


def product_asset(product: Product, contract: Contract | None = None) -> dg.AssetsDefinition:
    """The Dagster asset of a product: key ``[domain, name]``, deps on what it
    consumes, blocking audit checks and the contract's quality rules, its
    freshness SLA, and write–audit–publish as its body."""
    key = dg.AssetKey(product.key_path)
    specs = _product_checks(product, key, contract)

    @dg.asset(
        key=key,
        deps=[dg.AssetKey(ref.split("/")) for ref in product.consumes.values()],
        description=product.description,
        group_name=product.domain,
        owners=[f"team:{product.owner}"],
        kinds=_kinds(product),
        tags=_tags(product),
        metadata=_definition_metadata(product, contract),
        check_specs=specs,
        freshness_policy=freshness_policy(contract),
        automation_condition=product.automation,
    )
    def _product(
        context: dg.AssetExecutionContext, mesh: MeshStorage
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        store = mesh.store()
        if product.training is not None or product.scoring is not None:
            threads = model_threads(runs_going(context.instance))
            store = dataclasses.replace(store, model_threads=threads)
        try:
            result = build_product(product, store, context.run.run_id, context.log, contract)
        except DagmeshError as error:
            # A clear message for the run's failure, not a stack trace wrapper.
            raise dg.Failure(description=str(error)) from None
        except Exception as error:
            # Anything else may quote the data it failed on (pandas, DuckDB, the
            # product's own code): the run, its alerts and logs get it redacted.
            raise dg.Failure(description=failure_message(product.ref, error)) from None
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
            asset_key=key, metadata=_materialization_metadata(product, result), check_results=checks
        )

    return _product
