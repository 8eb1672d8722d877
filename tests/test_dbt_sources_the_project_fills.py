"""A dbt project whose staging models read its own seeds through ``source()``.

The fixture ``tests/fixtures/dbt/ecom`` is shaped like many public projects:
seeds load ``raw_*`` tables, staging models read them with
``source('ecom', 'raw_customers')``, a mart is read back through a source
under another name (``identifier:``), and one source reads a table nothing
in the project builds. A plain ``dbt build`` fails on an empty warehouse
(dbt orders nothing between a seed and a source); adopted, each source the
project fills is an edge to the product that fills it, and a first build
succeeds, in phases.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from dagmesh.declarations.dbt_manifest import DbtGraphError, build_phases, own_source_producers
from tests.cli import flat as _flat
from tests.conftest import REPO
from tests.test_bring_your_own_dbt import Project, _fingerprint

FIXTURE = REPO / "tests" / "fixtures" / "dbt" / "ecom"
DBT = str(Path(sys.executable).with_name("dbt"))

GRAPH = """
import json
from dagster import DagsterInstance
from dagmesh.orchestration.runner import workspace_context
with DagsterInstance.get() as instance, workspace_context(instance) as context:
    graph = context.create_request_context().asset_graph
    out = {"/".join(k.path): {"parents": sorted("/".join(p.path) for p in graph.get(k).parent_keys),
                              "materializable": graph.get(k).is_materializable}
           for k in graph.get_all_asset_keys()}
print("GRAPH=" + json.dumps(out))
"""


def _new_project(root: Path) -> Project:
    (root / "domains").mkdir()
    (root / "domains" / "__init__.py").write_text("")
    (root / "workspace.yaml").write_text("load_from: []\n")
    (root / "pyproject.toml").write_text("")
    shutil.copytree(FIXTURE, root / "dbt_projects" / "ecom")
    return Project(root)


def _env(project: Project) -> dict[str, str]:
    return {
        **os.environ,
        "DAGMESH_PROJECT": str(project.root),
        "DAGMESH_HOME": str(project.home),
        "DAGSTER_HOME": str(project.home / "dagster"),
    }


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The fixture adopted as domain ``shop``; nothing materialized yet."""
    project = _new_project(tmp_path_factory.mktemp("own_sources"))
    created = project.run("new", "domain", "shop", "--dbt-project", "dbt_projects/ecom")
    assert created.returncode == 0, _flat(created)[-3000:]
    reported = _flat(created)
    assert (
        "3 sources the project builds itself (ecom.raw_customers (raw_customers), "
        "ecom.raw_orders (raw_orders), marts.customer_totals (customer_revenue)): edges"
    ) in reported
    assert "1 sources (landing.web_events): read as they are" in reported
    return project


def test_plain_dbt_fails_a_first_build_of_the_fixture(tmp_path: Path):
    """The premise: one ``dbt build`` has no order between seed and source."""
    shutil.copytree(FIXTURE, tmp_path / "project")
    (tmp_path / "profiles.yml").write_text(
        "ecom:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: "
        f"'{tmp_path / 'plain.duckdb'}', threads: 2}}\n"
    )
    env = {**os.environ, "DBT_PROFILES_DIR": str(tmp_path), "DBT_SEND_ANONYMOUS_USAGE_STATS": "0"}
    done = subprocess.run(
        [DBT, "build"], cwd=tmp_path / "project", env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "raw_customers does not exist" in done.stdout or "raw_orders" in done.stdout


def test_sources_the_project_fills_are_edges_to_their_products(shop: Project):
    (shop.home / "dagster").mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", GRAPH], cwd=shop.root, env=_env(shop), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    graph = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("GRAPH="))[6:])
    assert graph["shop/stg_customers"]["parents"] == ["shop/raw_customers"]
    assert graph["shop/stg_orders"]["parents"] == ["shop/raw_orders"]
    # Read back under another name (identifier:): the mart that builds it.
    assert graph["shop/top_customers"]["parents"] == ["shop/customer_revenue"]
    # No separate source asset for what the project builds itself...
    assert not [k for k in graph if k.startswith(("shop/ecom/", "shop/marts/"))]
    # ...while a table nothing in the project builds stays an external source.
    assert graph["shop/stg_web_events"]["parents"] == ["shop/landing/web_events"]
    assert graph["shop/landing/web_events"]["materializable"] is False

    catalog = shop.run("catalog", "--json")
    assert catalog.returncode == 0, catalog.stderr[-2000:]
    products = {p["ref"]: p for p in json.loads(catalog.stdout)["products"]}
    assert sorted(products) == [
        "shop/customer_revenue",
        "shop/raw_customers",
        "shop/raw_orders",
        "shop/stg_customers",
        "shop/stg_orders",
        "shop/stg_web_events",
        "shop/top_customers",
    ]


def test_a_first_build_with_upstream_succeeds_where_plain_dbt_fails(shop: Project):
    folder = shop.root / "dbt_projects" / "ecom"
    before = _fingerprint(folder)
    result = shop.run("materialize", "shop/top_customers", "--with-upstream")
    output = _flat(result)
    assert result.returncode == 0, output[-4000:]
    assert _fingerprint(folder) == before
    for name in ("raw_customers", "raw_orders", "stg_customers", "customer_revenue"):
        assert f"✓ shop/{name}" in output, name
    con = duckdb.connect()
    top = con.execute(
        f"SELECT full_name, revenue FROM '{shop.port('shop', 'top_customers')}' ORDER BY 1"
    ).fetchall()
    assert top == [("Ada Lovelace", 37.0), ("Alan Turing", 41.0)]
    # Not asked for and not upstream: not built.
    assert not shop.port("shop", "stg_web_events").exists()
    # dbt's tests and unit test, run in the phases, recorded as checks.
    catalog = shop.run("catalog", "--json")
    products = {p["ref"]: p for p in json.loads(catalog.stdout)["products"]}
    assert products["shop/stg_customers"]["checks"] == {
        "unique_stg_customers_customer_id": "passed",
        "not_null_stg_customers_customer_id": "passed",
        "full_name_joins_names": "passed",
    }
    assert products["shop/customer_revenue"]["healthy"]


def test_a_failing_seed_skips_what_reads_it_in_a_later_phase_and_names_it(tmp_path: Path):
    project = _new_project(tmp_path)
    created = project.run("new", "domain", "shop", "--dbt-project", "dbt_projects/ecom")
    assert created.returncode == 0, _flat(created)[-3000:]
    seed = project.root / "dbt_projects" / "ecom" / "seeds" / "raw_orders.csv"
    # A ragged row: dbt cannot load the seed.
    seed.write_text(seed.read_text() + "14,3\n")
    result = project.run("materialize", "--all")
    output = _flat(result)
    assert result.returncode == 1, output[-3000:]
    assert "shop/raw_orders: dbt failed to build it" in output
    assert "shop/stg_orders: skipped: it needs what failed in this run: raw_orders" in output
    # What needs nothing that failed is published, in its phase.
    assert project.port("shop", "stg_customers").exists()
    assert not project.port("shop", "customer_revenue").exists()


def _manifest(nodes: dict[str, dict], sources: dict[str, dict]) -> dict:
    def node(uid: str, props: dict) -> dict:
        kind, _, name = uid.split(".")
        return {
            "unique_id": uid,
            "name": name,
            "resource_type": kind,
            "package_name": "p",
            "database": "warehouse",
            "schema": "main",
            "alias": props.get("alias", name),
            "config": {"materialized": props.get("materialized", "table")},
            "depends_on": {"nodes": props.get("reads", [])},
        }

    def source(uid: str, props: dict) -> dict:
        _, _, source_name, name = uid.split(".")
        return {
            "unique_id": uid,
            "name": name,
            "source_name": source_name,
            "database": props.get("database", "WAREHOUSE"),
            "schema": props.get("schema", "MAIN"),
            "identifier": props.get("identifier", name),
        }

    return {
        "metadata": {"project_name": "p"},
        "nodes": {uid: node(uid, props) for uid, props in nodes.items()},
        "sources": {uid: source(uid, props) for uid, props in sources.items()},
    }


def test_which_sources_a_project_fills_and_the_phases_of_a_build():
    manifest = _manifest(
        {
            "seed.p.raw": {},
            "model.p.stg": {"reads": ["source.p.s.raw"]},
            "model.p.eph": {"materialized": "ephemeral", "reads": ["source.p.s.mart"]},
            "model.p.mart": {"reads": ["model.p.stg"]},
            "model.p.report": {"reads": ["model.p.eph"]},
            # An incremental model reading its own table through source(): no edge.
            "model.p.inc": {"reads": ["source.p.s.inc"]},
            "model.p.ext": {"reads": ["source.p.s.landed"]},
        },
        {
            "source.p.s.raw": {},  # upper-case database and schema: DuckDB ignores case
            "source.p.s.mart": {},
            "source.p.s.inc": {},
            "source.p.s.landed": {"schema": "landing"},  # nothing builds it
            "source.p.s.other_db": {"database": "elsewhere", "identifier": "raw"},
        },
    )
    assert own_source_producers(manifest) == {
        "source.p.s.raw": "seed.p.raw",
        "source.p.s.mart": "model.p.mart",
    }
    producers = own_source_producers(manifest)
    everything = {uid for uid, n in manifest["nodes"].items() if uid != "model.p.eph"}
    assert build_phases(manifest, everything, producers) == [
        ["model.p.ext", "model.p.inc", "seed.p.raw"],
        ["model.p.mart", "model.p.stg"],
        ["model.p.report"],
    ]
    # Without the producer selected, its readers need no phase of their own.
    assert build_phases(manifest, {"model.p.stg", "model.p.mart"}, producers) == [
        ["model.p.mart", "model.p.stg"]
    ]
    # Two models reading each other through a source and a ref: refused, named.
    manifest["nodes"]["model.p.a"] = {
        **manifest["nodes"]["model.p.mart"],
        "name": "a",
        "unique_id": "model.p.a",
        "depends_on": {"nodes": ["source.p.s.b"]},
    }
    manifest["nodes"]["model.p.b"] = {
        **manifest["nodes"]["model.p.mart"],
        "name": "b",
        "alias": "b",
        "unique_id": "model.p.b",
        "depends_on": {"nodes": ["model.p.a"]},
    }
    cycle = {"source.p.s.b": "model.p.b"}
    with pytest.raises(DbtGraphError, match="read each other through source"):
        build_phases(manifest, {"model.p.a", "model.p.b"}, cycle)


def _properties(project: Project, product: str) -> dict[str, dict]:
    path = project.root / "domains" / "shop" / "contracts" / f"{product}.odcs.yaml"
    document = yaml.safe_load(path.read_text())
    return {p["name"]: p for p in document["schema"][0]["properties"]}


def test_contracts_take_types_and_undocumented_columns_from_the_build(
    shop: Project, tmp_path: Path
):
    # Built by the test above (module order); built here when run alone.
    if not shop.port("shop", "customer_revenue").exists():
        built = shop.run("materialize", "shop/top_customers", "--with-upstream")
        assert built.returncode == 0, _flat(built)[-3000:]
    before = _properties(shop, "stg_customers")
    assert "physicalType" not in before["customer_id"]  # the yml has no data_type
    assert "full_name" not in before  # nor lists it

    synced = shop.run("contracts", "sync", "shop")
    assert synced.returncode == 0, _flat(synced)[-2000:]
    stg = _properties(shop, "stg_customers")
    assert stg["customer_id"]["physicalType"] == "INTEGER"
    assert stg["customer_id"]["logicalType"] == "integer"
    assert stg["customer_id"]["unique"] is True  # the yml's facts stay
    assert stg["full_name"]["physicalType"] == "VARCHAR"
    assert stg["full_name"]["customProperties"] == [{"property": "undocumented", "value": True}]
    revenue = _properties(shop, "customer_revenue")
    assert revenue["customer_id"]["physicalType"] == "INTEGER"  # declared data_type
    assert revenue["revenue"]["logicalType"] == "number"
    assert revenue["revenue"]["description"] == "Total order amount."
    # Never built: nothing to take, nothing invented.
    assert "physicalType" not in _properties(shop, "stg_web_events").get("event_id", {})

    # The synced contracts pass lint, with this home and with one never built.
    for home in (shop.home, tmp_path / "empty-home"):
        (home / "dagster").mkdir(parents=True, exist_ok=True)
        linted = shop.run("lint", DAGMESH_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
        assert "contract out of date" not in _flat(linted), _flat(linted)[-3000:]
    # Syncing again without a build keeps what the build told.
    again = shop.run("contracts", "sync", "shop", DAGMESH_HOME=str(tmp_path / "empty-home"))
    assert again.returncode == 0
    assert _properties(shop, "stg_customers") == stg

    # A declared column the yml drops is still drift, undocumented ones are not.
    schema = shop.root / "dbt_projects" / "ecom" / "models" / "schema.yml"
    text = schema.read_text()
    schema.write_text(
        text.replace("      - name: revenue\n        description: Total order amount.\n", "")
    )
    try:
        linted = shop.run("lint", DAGMESH_HOME=str(tmp_path / "empty-home"))
    finally:
        schema.write_text(text)
    assert "shop/customer_revenue" in _flat(linted) and "'revenue'" in _flat(linted)
