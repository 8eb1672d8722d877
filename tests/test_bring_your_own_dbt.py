"""An existing, unmodified dbt project becomes a domain in one command.

The project is tests/fixtures/dbt/bakery (its own profile name, seeds,
staging views, tests under the older `tests:` key, no packages), copied into
a fresh dagmesh project with an empty workspace.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.cli import flat
from tests.conftest import REPO

DAGMESH = str(Path(sys.executable).with_name("dagmesh"))
FIXTURE = REPO / "tests" / "fixtures" / "dbt" / "bakery"
BAKERY_PRODUCTS = ["daily_sales", "raw_bakes", "raw_sales", "stg_bakes", "stg_sales", "waste"]


def _fingerprint(folder: Path) -> dict[str, str]:
    """Every file's checksum and every folder (an empty new `logs/` counts)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "folder"
        for p in sorted(folder.rglob("*"))
    }


class Project:
    """A dagmesh project in a temporary folder, driven through the CLI."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / ".dagmesh"

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        full_env = {
            **os.environ,
            "DAGMESH_PROJECT": str(self.root),
            "DAGMESH_HOME": str(self.home),
            "DAGSTER_HOME": str(self.home / "dagster"),
            "COLUMNS": "200",
            **env,
        }
        return subprocess.run(
            [DAGMESH, *args],
            cwd=self.root,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def port(self, domain: str, product: str) -> Path:
        return self.home / "domains" / domain / "ports" / product / "current" / "data.parquet"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("byo_project")
    (root / "domains").mkdir()
    (root / "domains" / "__init__.py").write_text("")
    (root / "workspace.yaml").write_text("# an empty mesh\nload_from: []\n")
    (root / "pyproject.toml").write_text(
        '[tool.dagmesh.dbt_targets.archive]\npath = "{home}/archive/{domain}.duckdb"\n'
    )
    shutil.copytree(FIXTURE, root / "dbt_projects" / "bakery")
    return Project(root)


@pytest.fixture(scope="module")
def adopted(project: Project) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    before = _fingerprint(project.root / "dbt_projects" / "bakery")
    created = project.run("new", "domain", "bakery", "--dbt-project", "dbt_projects/bakery")
    assert created.returncode == 0, created.stderr
    assert _fingerprint(project.root / "dbt_projects" / "bakery") == before
    # Every product is the domain's own (no dbt access: public, no consumers):
    # nothing blocks the load; what exposing them would ask is advice.
    output = flat(created)
    assert "Before domain bakery loads" not in output
    assert "Next: dagmesh materialize --all" in output
    for seed in ("raw_bakes", "raw_sales"):
        assert f"bakery/{seed}: has no description" in output
    materialized = project.run("materialize", "--all")
    assert _fingerprint(project.root / "dbt_projects" / "bakery") == before
    for command in (("lint",), ("catalog", "--json")):
        assert project.run(*command).returncode == 0, command
        assert _fingerprint(project.root / "dbt_projects" / "bakery") == before
    return created, materialized


def test_new_domain_writes_the_location_and_the_workspace_entry(project: Project, adopted):
    created, _ = adopted
    assert "6 products" in flat(created)
    assert "8 dbt tests as checks" in flat(created)
    workspace = (project.root / "workspace.yaml").read_text()
    assert workspace.startswith("# an empty mesh\n")
    assert "module_name: domains.bakery.definitions" in workspace
    products = (project.root / "domains" / "bakery" / "products.py").read_text()
    assert 'dbt_project="dbt_projects/bakery"' in products
    assert sorted(p.name for p in (project.root / "domains" / "bakery").iterdir()) == [
        "__init__.py",
        "contracts",
        "definitions.py",
        "products.py",
    ]
    contracts = sorted(
        p.name for p in (project.root / "domains" / "bakery" / "contracts").iterdir()
    )
    assert contracts == [f"{name}.odcs.yaml" for name in sorted(BAKERY_PRODUCTS)]


def test_materialize_all_loads_seeds_builds_models_and_runs_tests(project: Project, adopted):
    _, materialized = adopted
    assert materialized.returncode == 0, materialized.stderr[-4000:]
    output = flat(materialized)
    for name in BAKERY_PRODUCTS:
        assert f"✓ bakery/{name}" in output
    con = duckdb.connect()
    waste = con.execute(
        f"SELECT product, baked, sold, unsold FROM '{project.port('bakery', 'waste')}' "
        "WHERE day = DATE '2026-11-03' ORDER BY product"
    ).fetchall()
    assert waste == [("baguette", 110, 108, 2), ("croissant", 90, 70, 20), ("rye loaf", 30, 25, 5)]
    seeds = con.execute(f"SELECT count(*) FROM '{project.port('bakery', 'raw_sales')}'").fetchall()
    assert seeds == [(5,)]


def test_the_ui_shows_it_as_a_domain_with_its_tests_as_checks(project: Project, adopted):
    script = """
import json
from dagster import AssetCheckKey, DagsterInstance
from dagmesh.orchestration.runner import workspace_context
with DagsterInstance.get() as instance, workspace_context(instance) as context:
    graph = context.create_request_context().asset_graph
    out = {}
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        handle = graph.get_repository_handle(key)
        checks = instance.event_log_storage.get_asset_check_summary_records(list(node.check_keys))
        out["/".join(key.path)] = {
            "location": handle.location_name, "group": node.group_name, "owners": node.owners,
            "checks": {k.name: s.last_check_execution_record.status.value
                       for k, s in checks.items() if s.last_check_execution_record},
        }
print("GRAPH=" + json.dumps(out))
"""
    env = {
        **os.environ,
        "DAGMESH_PROJECT": str(project.root),
        "DAGMESH_HOME": str(project.home),
        "DAGSTER_HOME": str(project.home / "dagster"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=project.root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("GRAPH="))
    graph = json.loads(line.removeprefix("GRAPH="))
    assert sorted(graph) == [f"bakery/{name}" for name in BAKERY_PRODUCTS]
    assert {v["location"] for v in graph.values()} == {"bakery"}
    assert {v["group"] for v in graph.values()} == {"bakery"}
    assert graph["bakery/daily_sales"]["owners"] == ["team:bakery"]
    checks = graph["bakery/daily_sales"]["checks"]
    assert len(checks) == 3 and set(checks.values()) == {"SUCCEEDED"}, checks


def test_a_failing_dbt_test_blocks_publication(project: Project, adopted):
    seed = project.root / "dbt_projects" / "bakery" / "seeds" / "raw_sales.csv"
    good = seed.read_text()
    before = project.port("bakery", "daily_sales").resolve()
    seed.write_text(good + "6,pain au chocolat,2026-11-03,12,1.90\n")
    try:
        result = project.run("materialize", "--all")
    finally:
        seed.write_text(good)
    output = flat(result)
    assert result.returncode == 1, output[-3000:]
    # The dbt step's products it left unpublished, not those it published.
    assert "FAILED bakery/daily_sales, bakery/waste in run" in output
    assert "bakery/daily_sales: dbt test accepted_values_daily_sales_product" in output
    assert "failed on column product (rule accepted_values)" in output
    assert "'pain au chocolat'" in output  # a sample of the failing rows
    assert "bakery/waste: skipped" in output
    assert "the last good versions stay in place" in output
    # Consumers still read the last good version, unchanged.
    assert project.port("bakery", "daily_sales").resolve() == before
    rows = duckdb.connect().execute(f"SELECT count(*) FROM '{before}'").fetchall()
    assert rows == [(5,)]


def test_dbt_target_is_chosen_by_an_environment_variable(project: Project, adopted):
    result = project.run("materialize", "--all", DAGMESH_DBT_TARGET="archive")
    assert result.returncode == 0, flat(result)[-3000:]
    archive = project.home / "archive" / "bakery.duckdb"
    con = duckdb.connect(str(archive), read_only=True)
    assert con.execute("SELECT count(*) FROM daily_sales").fetchall() == [(5,)]
    con.close()
    wrong = project.run("materialize", "bakery/daily_sales", DAGMESH_DBT_TARGET="nowhere")
    assert wrong.returncode == 1
    assert "DAGMESH_DBT_TARGET='nowhere' is not a dbt target" in flat(wrong)


def test_a_project_that_does_not_compile_names_the_file_and_the_rest_still_runs(
    project: Project, adopted
):
    pastry = project.root / "dbt_projects" / "pastry"
    shutil.copytree(FIXTURE, pastry)
    created = project.run("new", "domain", "pastry", "--dbt-project", "dbt_projects/pastry")
    assert created.returncode == 0, created.stderr
    (pastry / "models" / "marts" / "broken.sql").write_text(
        "select * from {{ ref('nothing_here') }}\n"
    )
    result = project.run("materialize", "--all")
    output = flat(result)
    assert result.returncode == 1
    assert "FAILED to load code location pastry" in output
    assert "dbt project dbt_projects/pastry of domain pastry does not compile" in output
    assert "models/marts/broken.sql" in output and "nothing_here" in output
    for name in BAKERY_PRODUCTS:
        assert f"✓ bakery/{name}" in output

    # Adopting a project that does not compile is refused, and writes nothing.
    workspace = (project.root / "workspace.yaml").read_text()
    refused = project.run("new", "domain", "tarts", "--dbt-project", "dbt_projects/pastry")
    assert refused.returncode == 2
    assert "models/marts/broken.sql" in flat(refused)
    assert not (project.root / "domains" / "tarts").exists()
    assert (project.root / "workspace.yaml").read_text() == workspace


def test_a_failing_contract_rule_blocks_a_dbt_product(project: Project, adopted):
    contract_file = project.root / "domains" / "bakery" / "contracts" / "waste.odcs.yaml"
    good = contract_file.read_text()
    before = project.port("bakery", "waste").resolve()
    contract = yaml.safe_load(good)
    contract["schema"][0]["quality"] = [
        {"rule": "rowCount", "mustBeLessThan": 3, "description": "At most two rows."}
    ]
    contract_file.write_text(yaml.safe_dump(contract, sort_keys=False))
    try:
        result = project.run("materialize", "bakery/waste")
    finally:
        contract_file.write_text(good)
    output = flat(result)
    assert result.returncode == 1, output[-3000:]
    assert "bakery/waste: table violates rowCount (row_count): measured 5, expected " in output
    assert "mustBeLessThan 3.0" in output
    assert project.port("bakery", "waste").resolve() == before
