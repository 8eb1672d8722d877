"""A domain's dbt project as Dagster assets: one dbt multi-asset.

It holds what ``@dbt_assets`` would (the translator's asset specs and a
check per dbt test, built with dagster-dbt's public translator methods), plus
the asset checks of each model's data contract and unit tests, which the
platform runs on the staged model before publishing it. ``@dbt_assets``
takes no extra check specs (dagster-dbt 0.29), hence the ``multi_asset``.
"""

from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject

# dagster-dbt's DbtCliResource.cli(context=...) reads a multi-asset's dbt
# selection from this op tag; @dbt_assets sets it, so ours must too.
from dagster_dbt.asset_utils import DAGSTER_DBT_SELECT_METADATA_KEY

from dagmesh import config
from dagmesh.declarations.contract import Contract
from dagmesh.declarations.dbt_manifest import (
    is_ephemeral,
    own_source_producers,
    product_name,
    unit_tests_of,
)
from dagmesh.declarations.product import Domain
from dagmesh.declarations.spec import ProductSpec, dbt_spec
from dagmesh.engine.checks import audit_checks
from dagmesh.engine.dbt.project import DomainDbtProject, dbt_project
from dagmesh.errors import DagmeshError
from dagmesh.orchestration.assets import check_specs
from dagmesh.orchestration.dbt.run import pool_name, run_dbt_products
from dagmesh.orchestration.dbt.translator import MeshDbtTranslator
from dagmesh.orchestration.resources import MeshStorage


def dbt_domain_assets(
    domain: Domain,
    contracts: Mapping[str, Contract | None],
    specs: Mapping[str, ProductSpec] | None = None,
) -> dg.AssetsDefinition:
    """Every model, seed and snapshot of the domain's dbt project as a
    product, its dbt tests, a schema check of its typed columns and its
    contract's quality rules as asset checks (``error`` severity blocks
    publication).

    The manifest is the prepared one; it is parsed again only when a file of
    the project is newer (an edit during development).
    """
    project = dbt_project(domain)
    project.ensure_prepared()
    dagster_project = DbtProject(
        project.project_dir,
        target_path=project.target_path,
        profiles_dir=project.write_profile(config.mesh_home()),
    )
    # The specs the code location's governance check already read, else read here.
    specs_by_name = {
        name: (specs or {}).get(name)
        or dbt_spec(domain, node, project.manifest, project.project_dir)
        for name, node in project.product_nodes().items()
    }
    manifest = project.manifest
    own_sources = {
        source: product_name(manifest["nodes"][producer])
        for source, producer in own_source_producers(manifest).items()
    }
    translator = MeshDbtTranslator(domain.name, domain.owner, contracts, specs_by_name, own_sources)
    asset_specs, dbt_checks = dbt_asset_specs(domain.name, translator, manifest, dagster_project)
    platform_checks = _platform_checks(domain.name, project, specs_by_name, contracts, dbt_checks)

    @dg.multi_asset(
        name=f"{domain.name}_dbt",
        specs=asset_specs,
        check_specs=[*dbt_checks, *platform_checks],
        can_subset=True,
        op_tags={DAGSTER_DBT_SELECT_METADATA_KEY: "fqn:*"},
        pool=pool_name(domain.name),
        allow_arbitrary_check_specs=True,
    )
    def _dbt_products(context: dg.AssetExecutionContext, mesh: MeshStorage) -> Iterator[Any]:
        try:
            yield from run_dbt_products(
                context, domain, contracts, mesh, (translator, dagster_project)
            )
        except DagmeshError as error:
            # The platform's own errors are written without data: the run's
            # failure shows them whole, not redacted as a foreign error is.
            raise dg.Failure(description=str(error)) from None

    return _dbt_products


def _platform_checks(
    domain: str,
    project: DomainDbtProject,
    specs_by_name: Mapping[str, ProductSpec],
    contracts: Mapping[str, Contract | None],
    dbt_checks: list[dg.AssetCheckSpec],
) -> list[dg.AssetCheckSpec]:
    """The checks the platform adds to dbt's tests: each product's audits and
    contract rules, and its unit tests (where no dbt test has that name)."""
    contract_checks = [
        check
        for name, spec in specs_by_name.items()
        for check in check_specs(
            dg.AssetKey([domain, name]), audit_checks(spec), contracts.get(name)
        )
    ]
    taken = {check.key for check in [*dbt_checks, *contract_checks]}
    unit_checks = [
        check
        for check in unit_test_checks(domain, project.product_nodes(), project.manifest)
        if check.key not in taken
    ]
    return [*contract_checks, *unit_checks]


# What dagster-dbt makes an asset of: models that are not ephemeral, seeds, snapshots.
ASSET_TYPES = {"model", "seed", "snapshot"}


def dbt_asset_specs(
    domain: str,
    translator: DagsterDbtTranslator,
    manifest: Mapping[str, Any],
    project: DbtProject,
) -> tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec]]:
    """Every dbt node the project builds as an asset spec, and each of its
    dbt tests as a check spec, from the translator's public methods.

    Raises DagmeshError when two nodes would share an asset key."""
    specs: list[dg.AssetSpec] = []
    checks: dict[dg.AssetCheckKey, dg.AssetCheckSpec] = {}
    uids_by_key: dict[dg.AssetKey, list[str]] = defaultdict(list)
    for uid, node in manifest["nodes"].items():
        if node["resource_type"] not in ASSET_TYPES or is_ephemeral(node):
            continue
        spec = translator.get_asset_spec(manifest, uid, project)
        specs.append(spec)
        uids_by_key[spec.key].append(uid)
        for child in manifest["child_map"].get(uid, []):
            if child.startswith("test."):
                check = translator.get_asset_check_spec(spec, manifest, child, project)
                if check is not None:
                    checks[check.key] = check
    shared = {key: uids for key, uids in uids_by_key.items() if len(uids) > 1}
    if shared:
        named = "; ".join(
            f"{k.to_user_string()}: {', '.join(sorted(u))}" for k, u in shared.items()
        )
        raise DagmeshError(f"dbt project of domain {domain}: nodes share an asset key ({named})")
    return specs, list(checks.values())


def unit_test_checks(
    domain: str, nodes: Mapping[str, Mapping[str, Any]], manifest: Mapping[str, Any]
) -> list[dg.AssetCheckSpec]:
    """Each dbt unit test as a blocking asset check of its model (dagster-dbt
    0.29 makes none: it reports no unit test result); :mod:`dagmesh.orchestration.dbt.run`
    records each one's result from dbt's run results."""
    return [
        dg.AssetCheckSpec(
            unit["name"],
            asset=dg.AssetKey([domain, name]),
            blocking=True,
            description=f"dbt unit test {unit['name']} of {unit.get('model', name)} "
            f"({unit.get('original_file_path', '?')}): given fixed input rows, the "
            "model returns the expected rows.",
        )
        for name, node in nodes.items()
        for unit in unit_tests_of(manifest, node["unique_id"])
    ]
