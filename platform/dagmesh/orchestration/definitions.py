"""A domain's code location: its products as Dagster definitions."""

from __future__ import annotations

from typing import Literal

import dagster as dg

from dagmesh import config
from dagmesh.declarations.product import Domain
from dagmesh.engine.governance import enforce_at_load
from dagmesh.engine.privacy import owner_only
from dagmesh.engine.registry import Registry
from dagmesh.engine.specs import product_names
from dagmesh.orchestration.alerts import freshness_alert_sensor, run_failure_alert_sensor
from dagmesh.orchestration.assets import product_asset
from dagmesh.orchestration.automation import automation_sensor
from dagmesh.orchestration.dead_runs import dead_run_sensor
from dagmesh.orchestration.resources import MeshStorage

Executor = Literal["in_process", "multiprocess"]


def domain_definitions(domain: Domain, executor: Executor = "in_process") -> dg.Definitions:
    """Definitions for one domain's code location.

    At load it checks, against the mesh registry, that every product it
    consumes from another domain is registered, and enforces the mesh's
    governance policies (a violation fails the load, naming the product,
    the policy and the fix). It imports no other domain's code, so its load
    time does not grow with the mesh and a broken domain breaks only itself.
    Each product gets its contract's checks and freshness SLA; sensors alert
    on run failures and freshness breaches; another marks runs whose worker
    died as failed and frees their pool slots. Runs use the in-process executor
    by default: one step costs ~50 ms in-process against ~1 s as a subprocess
    on a 2-core machine, and DuckDB already uses every core inside a step
    (see the benchmark in bench/).
    """
    owner_only()  # the code server and its run workers create owner-only files
    config.alert_webhook_url()  # a malformed alert URL fails the load, naming the variable
    mesh = enforce_at_load(domain, Registry(config.registry_dir()))
    contracts = {
        name: mesh.contracts.get(f"{domain.name}/{name}") for name in product_names(domain)
    }
    assets = [product_asset(p, contracts[p.name]) for p in domain.products.values()]
    if domain.dbt_project_dir:
        # Imported here: dagster-dbt and dbt cost ~2 s to import, which a
        # location (and every run worker) without a dbt project never pays.
        from dagmesh.orchestration.dbt.assets import dbt_domain_assets

        specs = {s.name: s for s in mesh.specs.values() if s.domain == domain.name}
        assets.append(dbt_domain_assets(domain, contracts, specs))
    sla = {
        dg.AssetKey([domain.name, name]): contract.freshness
        for name, contract in contracts.items()
        if contract is not None and contract.freshness is not None
    }
    sensors = [
        run_failure_alert_sensor(domain.name),
        automation_sensor(domain.name),
        dead_run_sensor(domain.name),
    ]
    if sla:
        sensors.append(freshness_alert_sensor(domain.name, sla))
    job = dg.define_asset_job(
        f"{domain.name}_products",
        selection=dg.AssetSelection.groups(domain.name),
        description=f"Materialize every product of the {domain.name} domain.",
    )
    # The keyed-hash secret comes only from the environment (EnvVar: never
    # stored in the run's config); without it, PII columns are redacted.
    keyed = config.pii_key() is not None
    mesh_storage = MeshStorage(pii_key=dg.EnvVar(config.PII_KEY_ENV)) if keyed else MeshStorage()
    return dg.Definitions(
        assets=assets,
        jobs=[job],
        sensors=sensors,
        resources={"mesh": mesh_storage},
        executor=dg.in_process_executor if executor == "in_process" else dg.multiprocess_executor,
    )
