"""A domain's code location: its products as Dagster definitions."""

from __future__ import annotations

from typing import Literal

import dagster as dg

from dagmesh.assets import product_asset
from dagmesh.dbt.assets import dbt_domain_assets
from dagmesh.product import Domain
from dagmesh.registry import check_consumed
from dagmesh.resources import MeshStorage

Executor = Literal["in_process", "multiprocess"]


def domain_definitions(domain: Domain, executor: Executor = "in_process") -> dg.Definitions:
    """Definitions for one domain's code location.

    Checks at load that every consumed product exists in the mesh. Runs use
    the in-process executor by default: one step costs ~50 ms in-process
    against ~1 s as a subprocess on a 2-core machine, and DuckDB already uses
    every core inside a step (see the benchmark in bench/).
    """
    check_consumed(domain)
    assets = [product_asset(p) for p in domain.products.values()]
    if domain.dbt is not None:
        assets.append(dbt_domain_assets(domain.name, domain.owner, domain.dbt))
    job = dg.define_asset_job(
        f"{domain.name}_products",
        selection=dg.AssetSelection.groups(domain.name),
        description=f"Materialize every product of the {domain.name} domain.",
    )
    return dg.Definitions(
        assets=assets,
        jobs=[job],
        resources={"mesh": MeshStorage()},
        executor=dg.in_process_executor if executor == "in_process" else dg.multiprocess_executor,
    )
