"""Declarative automation across domains, evaluated by the Dagster instance's
own automation API over real materializations: a new version upstream
refreshes its consumer in another domain; an upstream that failed its
blocking checks published nothing, so its consumer does not refresh."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from dagmesh import Column, Domain
from dagmesh.orchestration.assets import product_asset
from dagmesh.orchestration.automation import on_cron, when_upstream_changes
from dagmesh.orchestration.resources import MeshStorage

ROWS = {"ids": [1, 2, 3]}


def _mesh() -> list[dg.AssetsDefinition]:
    up = Domain("up", owner="up", description="Produces numbers.")

    @up.python_product(
        description="Numbers.",
        columns=[Column("id", "BIGINT", "Id.", classification="internal")],
        primary_key="id",
    )
    def numbers(ctx):
        return pd.DataFrame({"id": ROWS["ids"]})

    @up.python_product(
        description="Numbers that must be unique.",
        columns=[Column("id", "BIGINT", "Id.", classification="internal")],
        primary_key="id",
    )
    def checked(ctx):
        return pd.DataFrame({"id": ROWS["ids"]})

    down = Domain("down", owner="down", description="Consumes up.")
    for name, source in (("doubled", "numbers"), ("after_checked", "checked")):
        down.sql_product(
            name,
            description=f"Twice up/{source}.",
            consumes=[f"up/{source}"],
            columns=[Column("id", "BIGINT", "Id.", classification="internal")],
            sql=f"SELECT id * 2 AS id FROM {source}",
            refresh=when_upstream_changes(),
        )
    down.sql_product(
        "nightly",
        description="Once a night.",
        consumes=["up/numbers"],
        columns=[Column("id", "BIGINT", "Id.", classification="internal")],
        sql="SELECT id FROM numbers",
        refresh=on_cron("0 2 * * *"),
    )
    return [product_asset(p) for d in (up, down) for p in d.products.values()]


def test_an_upstream_update_refreshes_its_consumer_in_another_domain(tmp_path: Path):
    assets = _mesh()
    defs = dg.Definitions(assets=assets, resources={"mesh": MeshStorage(home=str(tmp_path))})
    with dg.instance_for_test() as instance:
        ROWS["ids"] = [1, 2, 3]
        assert dg.materialize(assets, instance=instance, resources=defs.resources).success
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # everything is up to date

        # up publishes new versions of both products; `checked` fails its primary key.
        ROWS["ids"] = [4, 5, 5]
        numbers, checked = (a for a in assets if a.key.path[0] == "up")
        run = dg.materialize(
            [numbers, checked], instance=instance, resources=defs.resources, raise_on_error=False
        )
        assert not run.success
        materialized = {e.asset_key.path[1] for e in run.get_asset_materialization_events()}
        assert materialized == set()  # both failed their primary key: nothing published

        ROWS["ids"] = [4, 5, 6]
        assert dg.materialize([numbers], instance=instance, resources=defs.resources).success
        second = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=first.cursor
        )
        requested = {
            "/".join(r.key.path) for r in second.results if r.true_subset.size and r.key.path
        }
        assert "down/doubled" in requested
        assert "down/after_checked" not in requested  # its upstream published nothing
        assert "down/nightly" not in requested  # waits for its cron tick
        assert second.total_requested == 1
