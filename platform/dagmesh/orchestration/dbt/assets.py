"""A domain's dbt project as Dagster assets: one dbt multi-asset.

It is what ``@dbt_assets`` builds (the same specs and dbt test checks from
``build_dbt_specs``, the same op tags), plus the asset checks of each
model's data contract, which the platform runs on the staged model before
publishing it. ``@dbt_assets`` takes no extra check specs, hence the
``multi_asset`` here (pinned dagster-dbt 0.29; see pyproject).
"""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DbtProject
from dagster_dbt.asset_utils import (
    DAGSTER_DBT_SELECT_METADATA_KEY,
    DBT_DEFAULT_EXCLUDE,
    DBT_DEFAULT_SELECT,
    DBT_DEFAULT_SELECTOR,
    build_dbt_specs,
)

from dagmesh import config
from dagmesh.declarations.contract import Contract
from dagmesh.declarations.dbt_manifest import own_source_producers, product_name, unit_tests_of
from dagmesh.declarations.product import Domain
from dagmesh.declarations.spec import ProductSpec, dbt_spec
from dagmesh.engine.checks import audit_checks
from dagmesh.engine.dbt.project import dbt_project
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
    asset_specs, dbt_checks = build_dbt_specs(
        translator=translator,
        manifest=project.manifest,
        select=DBT_DEFAULT_SELECT,
        exclude=DBT_DEFAULT_EXCLUDE,
        selector=DBT_DEFAULT_SELECTOR,
        io_manager_key=None,
        project=dagster_project,
    )
    contract_checks = [
        check
        for name, spec in specs_by_name.items()
        for check in check_specs(
            dg.AssetKey([domain.name, name]),
            audit_checks(spec),
            contracts.get(name),
        )
    ]
    taken = {check.key for check in [*dbt_checks, *contract_checks]}
    unit_checks = [
        check
        for check in unit_test_checks(domain.name, project.product_nodes(), manifest)
        if check.key not in taken
    ]

    @dg.multi_asset(
        name=f"{domain.name}_dbt",
        specs=asset_specs,
        check_specs=[*dbt_checks, *unit_checks, *contract_checks],
        can_subset=True,
        op_tags={DAGSTER_DBT_SELECT_METADATA_KEY: DBT_DEFAULT_SELECT},
        pool=pool_name(domain.name),
        allow_arbitrary_check_specs=True,
    )
    def _dbt_products(context: dg.AssetExecutionContext, mesh: MeshStorage) -> Iterator[Any]:
        try:
            yield from run_dbt_products(context, domain, contracts, mesh)
        except DagmeshError as error:
            # The platform's own errors are written without data: the run's
            # failure shows them whole, not redacted as a foreign error is.
            raise dg.Failure(description=str(error)) from None

    return _dbt_products


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
