"""A domain's dbt project as Dagster assets: one ``@dbt_assets`` definition."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_dbt import DbtProject, dbt_assets

from dagmesh import config
from dagmesh.dbt.project import DomainDbtProject
from dagmesh.dbt.run import pool_name, run_dbt_products
from dagmesh.dbt.translator import MeshDbtTranslator
from dagmesh.resources import MeshStorage


def dbt_domain_assets(domain: str, owner: str, project: DomainDbtProject) -> dg.AssetsDefinition:
    """Every model, seed and snapshot of ``project`` as a product of ``domain``,
    its dbt tests as asset checks (``error`` severity blocks publication).

    The manifest is the prepared one; it is parsed again only when a file of
    the project is newer (an edit during development).
    """
    manifest = project.ensure_prepared()
    dbt_project = DbtProject(
        project.project_dir,
        target_path=project.target_path,
        profiles_dir=project.write_profile(config.mesh_home()),
    )

    @dbt_assets(
        manifest=manifest,
        project=dbt_project,
        dagster_dbt_translator=MeshDbtTranslator(domain, owner),
        name=f"{domain}_dbt",
        pool=pool_name(domain),
    )
    def _dbt_products(context: dg.AssetExecutionContext, mesh: MeshStorage) -> Iterator[Any]:
        yield from run_dbt_products(context, project, mesh)

    return _dbt_products
