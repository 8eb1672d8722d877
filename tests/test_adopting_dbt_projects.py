"""Real dbt projects of different shapes adopt as they are.

Each fixture project under tests/fixtures/dbt/ is copied unchanged into a
fresh dagmesh project and adopted with the one command:

- ``jaffle_shop``: seeds in their own ``+schema``, staging views, an
  ephemeral model, an incremental model, a versioned model, a snapshot,
  tests under ``tests:`` and ``data_tests:`` (a ``relationships`` test, a
  warn-severity test, a singular test), a unit test, a source with
  freshness, an exposure, macros, vars, a group with access levels, a
  profile named differently and a project name that is not a lower-case
  identifier. It loads (its internals never block it), materializes twice
  with a seed changed in between (the incremental model's and the
  snapshot's state carry over), and every product's rows equal a plain
  ``dbt build`` of the same project run the same way.
- ``needs_packages``: refused with one message naming the packages; nothing
  is written.
- ``bakery``: tests/test_bring_your_own_dbt.py.

The whole project tree is checksummed before and after adoption,
materialization, ``lint`` and ``catalog``: dagmesh writes nothing inside it.
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

from dagmesh.engine.dbt.adoption import DbtPackagesError, refuse_packages, required_packages
from tests.cli import flat as _flat
from tests.conftest import REPO
from tests.test_bring_your_own_dbt import Project, _fingerprint

FIXTURES = REPO / "tests" / "fixtures" / "dbt"
DBT = str(Path(sys.executable).with_name("dbt"))
JAFFLE_PRODUCTS = [
    "customers_snapshot",
    "customers_v1",
    "customers_v2",
    "orders",
    "raw_customers",
    "raw_orders",
    "raw_payments",
    "stg_customers",
    "stg_orders",
    "stg_payments",
]
PUBLIC = ["customers_v1", "customers_v2", "orders"]
# The second run's change to a seed: a customer changes her last name.
CHANGED_SEED = ("seeds/raw_customers.csv", "3,Kathleen,P.", "3,Kathleen,Q.")


def _new_project(root: Path) -> Project:
    (root / "domains").mkdir()
    (root / "domains" / "__init__.py").write_text("")
    (root / "workspace.yaml").write_text("load_from: []\n")
    (root / "pyproject.toml").write_text("")
    return Project(root)


def _change_seed(project_dir: Path) -> None:
    path, old, new = CHANGED_SEED
    seed = project_dir / path
    text = seed.read_text()
    assert old in text
    seed.write_text(text.replace(old, new))


class PlainDbt:
    """The same project built by plain dbt-duckdb in a temporary copy."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.project = folder / "project"
        shutil.copytree(FIXTURES / "jaffle_shop", self.project)
        settings = yaml.safe_load((self.project / "dbt_project.yml").read_text())
        outputs = {"dev": {"type": "duckdb", "path": str(folder / "plain.duckdb"), "threads": 1}}
        profile = {settings["profile"]: {"target": "dev", "outputs": outputs}}
        (folder / "profiles.yml").write_text(yaml.safe_dump(profile))

    def build(self) -> None:
        env = {
            **os.environ,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_VERSION_CHECK": "false",
            "DBT_PROFILES_DIR": str(self.folder),
        }
        done = subprocess.run(
            [DBT, "build"], cwd=self.project, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout[-3000:]

    def row_counts(self) -> dict[str, int]:
        manifest = json.loads((self.project / "target" / "manifest.json").read_text())
        con = duckdb.connect(str(self.folder / "plain.duckdb"), read_only=True)
        counts = {}
        for node in manifest["nodes"].values():
            if node["resource_type"] in ("model", "seed", "snapshot") and node["relation_name"]:
                name = node["name"] + (f"_v{node['version']}" if node.get("version") else "")
                query = f"SELECT count(*) FROM {node['relation_name']}"
                counts[name] = con.execute(query).fetchone()[0]
        con.close()
        return counts


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = _new_project(tmp_path_factory.mktemp("adopting"))
    for name in ("jaffle_shop", "needs_packages"):
        shutil.copytree(FIXTURES / name, project.root / "dbt_projects" / name)
    return project


@pytest.fixture(scope="module")
def jaffle(mesh: Project) -> dict[str, object]:
    """jaffle_shop adopted as domain ``shop``, its public models given the
    SLA the owner writes into their contracts, materialized once."""
    folder = mesh.root / "dbt_projects" / "jaffle_shop"
    before = _fingerprint(folder)
    created = mesh.run("new", "domain", "shop", "--dbt-project", "dbt_projects/jaffle_shop")
    assert created.returncode == 0, _flat(created)[-3000:]
    assert _fingerprint(folder) == before
    for name in PUBLIC:
        path = mesh.root / "domains" / "shop" / "contracts" / f"{name}.odcs.yaml"
        document = yaml.safe_load(path.read_text())
        document["slaProperties"] = [{"property": "latency", "value": 1, "unit": "d"}]
        path.write_text(yaml.safe_dump(document, sort_keys=False))
    first = mesh.run("materialize", "--all")
    assert _fingerprint(folder) == before
    return {"created": created, "first": first, "before": before}


def test_a_project_needing_packages_is_refused_and_nothing_is_written(mesh: Project):
    folder = mesh.root / "dbt_projects" / "needs_packages"
    before = _fingerprint(folder)
    workspace = (mesh.root / "workspace.yaml").read_text()
    refused = mesh.run("new", "domain", "web", "--dbt-project", "dbt_projects/needs_packages")
    output = _flat(refused)
    assert refused.returncode == 2, output
    assert output.count("error:") == 1
    assert "needs dbt packages that are not installed" in output
    assert "dbt-labs/dbt_utils" in output and "dbt-audit-helper" in output
    assert "`dbt deps` cannot run here" in output and "Nothing was written" in output
    assert _fingerprint(folder) == before
    assert (mesh.root / "workspace.yaml").read_text() == workspace
    assert not (mesh.root / "domains" / "web").exists()
    assert not (mesh.root / "build" / "dbt" / "web").exists()  # dbt never ran


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"packages.yml": "packages: []\n"}, []),
        ({"packages.yml": "# nothing yet\n"}, []),
        (
            {
                "dependencies.yml": "packages:\n"
                "  - package: calogica/dbt_date\n"
                "    version: 0.10.0\n"
            },
            ["dependencies.yml: calogica/dbt_date 0.10.0"],
        ),
        (
            {"dependencies.yml": "projects:\n  - name: core_platform\n"},
            ["dependencies.yml: project core_platform"],
        ),
        (
            {"packages.yml": "packages:\n  - local: ../shared_macros\n"},
            ["packages.yml: ../shared_macros"],
        ),
    ],
    ids=["empty list", "no entries", "dependencies.yml", "dbt mesh project", "local package"],
)
def test_which_packages_a_project_needs(tmp_path: Path, files: dict[str, str], expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert required_packages(tmp_path) == expected


def test_installed_packages_are_not_refused_and_bad_yaml_names_the_file(tmp_path: Path):
    (tmp_path / "packages.yml").write_text("packages:\n  - package: dbt-labs/dbt_utils\n")
    with pytest.raises(DbtPackagesError, match="dbt-labs/dbt_utils"):
        refuse_packages(tmp_path)
    installed = tmp_path / "dbt_packages" / "dbt_utils"
    installed.mkdir(parents=True)
    (installed / "dbt_project.yml").write_text("name: dbt_utils\n")
    refuse_packages(tmp_path)  # installed by `dbt deps` elsewhere: dbt parses it
    (tmp_path / "packages.yml").write_text("packages: [\n")
    with pytest.raises(DbtPackagesError, match="packages.yml of dbt project .* is not YAML"):
        refuse_packages(tmp_path)


def test_adoption_reports_every_kind_before_writing(jaffle):
    output = jaffle["created"].stdout + jaffle["created"].stderr
    flat = " ".join(output.split())
    reported = {
        "3 seeds (raw_customers, raw_orders, raw_payments): products",
        "3 view models (stg_customers, stg_orders, stg_payments): products",
        "2 table models (customers_v1, customers_v2): products",
        "1 incremental models (orders): products; their state",
        "1 ephemeral models (order_payments): not products",
        "1 snapshots (customers_snapshot): products; their history",
        "18 data tests",
        "yml entries with the older `tests:` key (stg_customers.customer_id",
        "1 unit tests (full_name_joins_first_and_last): run by `dbt build` before their "
        "model, each a blocking asset check of it",
        "1 sources (shop_events.page_views)",
        "nodes with +schema (raw_customers (raw)",
        "2 model versions (customers_v1, customers_v2): each version is a product",
        "models by access (3 public, 4 internal)",
        "1 groups (sales (owner jaffle_sales))",
        "macros (cents_to_dollars, test_positive)",
        "2 vars (big_order_cents, shop_currency)",
        "1 profile (jaffle_warehouse): not read",
        "1 project name (Jaffle_Shop): not a safe identifier",
    }
    for line in reported:
        assert line in flat, line
    not_adopted = flat[flat.index("Not adopted:") : flat.index("wrote ")]
    assert "1 source freshness rules (shop_events.page_views): not run" in not_adopted
    assert "1 exposures (weekly_sales_dashboard): not adopted" in not_adopted
    # Reported before the first file is written.
    assert output.index("holds:") < output.index("wrote ")


def test_internals_never_block_the_load_and_exposing_them_is_advice(jaffle):
    flat = _flat(jaffle["created"])
    advice = flat[flat.index("Advice:") : flat.index("Before domain shop loads")]
    for internal in ("stg_orders", "raw_orders", "customers_snapshot"):
        assert f"shop/{internal}: has no description" in advice
    # Only the public models are asked for something: the SLA dbt cannot state.
    asked = flat[flat.index("Before domain shop loads") :]
    assert "fix what the mesh's policies ask (3)" in asked
    for name in PUBLIC:
        assert f"shop/{name}: [public_sla]" in asked
    for internal in ("stg_", "raw_", "customers_snapshot:"):
        assert f"shop/{internal}" not in asked


def test_materializes_with_its_tests_as_checks_equal_to_plain_dbt(
    mesh: Project, jaffle, tmp_path: Path
):
    first = jaffle["first"]
    assert first.returncode == 0, _flat(first)[-4000:]
    for name in JAFFLE_PRODUCTS:
        assert f"✓ shop/{name}" in _flat(first)
    plain = PlainDbt(tmp_path)
    plain.build()
    assert _published_counts(mesh) == plain.row_counts()

    # A second run after a seed changed: the snapshot keeps the old row and
    # adds the new one, the incremental model merges instead of duplicating.
    folder = mesh.root / "dbt_projects" / "jaffle_shop"
    _change_seed(folder)
    _change_seed(plain.project)
    before = _fingerprint(folder)
    second = mesh.run("materialize", "--all")
    assert second.returncode == 0, _flat(second)[-4000:]
    assert _fingerprint(folder) == before
    plain.build()
    counts = _published_counts(mesh)
    assert counts == plain.row_counts()
    assert counts["customers_snapshot"] == 9 and counts["orders"] == 12

    con = duckdb.connect()
    names = con.execute(
        f"SELECT last_name, dbt_valid_to IS NULL FROM '{mesh.port('shop', 'customers_snapshot')}' "
        "WHERE id = 3 ORDER BY dbt_valid_from"
    ).fetchall()
    assert names == [("P.", False), ("Q.", True)]
    big = con.execute(
        f"SELECT count(*) FROM '{mesh.port('shop', 'orders')}' WHERE is_big_order"
    ).fetchone()
    assert big == (2,)  # var('big_order_cents') = 3000 cents


def _published_counts(mesh: Project) -> dict[str, int]:
    con = duckdb.connect()
    return {
        name: con.execute(f"SELECT count(*) FROM '{mesh.port('shop', name)}'").fetchone()[0]
        for name in JAFFLE_PRODUCTS
    }


DAGSTER_CHECKS = """
import json
from dagster import DagsterInstance
from dagmesh.orchestration.runner import workspace_context
with DagsterInstance.get() as instance, workspace_context(instance) as context:
    graph = context.create_request_context().asset_graph
    out = {"/".join(k.path): sorted(c.name for c in graph.get(k).check_keys)
           for k in graph.materializable_asset_keys}
print("CHECKS=" + json.dumps(out))
"""


def test_the_catalog_lists_exactly_the_checks_dagster_runs(mesh: Project, jaffle):
    assert jaffle["first"].returncode == 0
    env = {
        **os.environ,
        "DAGMESH_PROJECT": str(mesh.root),
        "DAGMESH_HOME": str(mesh.home),
        "DAGSTER_HOME": str(mesh.home / "dagster"),
    }
    done = subprocess.run(
        [sys.executable, "-c", DAGSTER_CHECKS],
        cwd=mesh.root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("CHECKS="))
    dagster_checks = json.loads(line.removeprefix("CHECKS="))

    folder = mesh.root / "dbt_projects" / "jaffle_shop"
    before = _fingerprint(folder)
    catalog = mesh.run("catalog", "--json")
    assert catalog.returncode == 0, catalog.stderr
    products = {p["ref"]: p for p in json.loads(catalog.stdout)["products"]}
    assert sorted(products) == [f"shop/{n}" for n in JAFFLE_PRODUCTS]
    for ref, product in products.items():
        assert sorted(product["checks"]) == dagster_checks[ref], ref
        assert product["healthy"], (ref, product["checks"])
    relationships = "relationships_orders_customer_id__customer_id__ref_stg_customers_"
    assert products["shop/orders"]["checks"][relationships] == "passed"
    assert relationships not in products["shop/stg_customers"]["checks"]
    assert products["shop/orders"]["checks"]["assert_orders_have_payments"] == "passed"
    assert products["shop/orders"]["warning_checks"] == ["positive_orders_amount"]
    # The unit test is a check of its model, passed in the run.
    assert products["shop/stg_customers"]["checks"]["full_name_joins_first_and_last"] == "passed"
    # Columns as consumers read them: the yml's (no data_type) typed from the
    # published version, and those the yml does not list.
    columns = {c["name"]: c for c in products["shop/stg_customers"]["columns"]}
    assert list(columns) == ["customer_id", "first_name", "last_name", "full_name"]
    assert columns["customer_id"]["type"] == "INTEGER"
    assert columns["full_name"]["type"] == "VARCHAR" and columns["full_name"]["description"] == ""
    assert _fingerprint(folder) == before


def test_a_failing_unit_test_is_named_and_its_model_not_published(mesh: Project, jaffle):
    assert jaffle["first"].returncode == 0
    schema = mesh.root / "dbt_projects" / "jaffle_shop" / "models" / "staging" / "schema.yml"
    good = schema.read_text()
    before = mesh.port("shop", "stg_customers").resolve()
    schema.write_text(good.replace("full_name: Ada L.}", "full_name: Ada Lovelace}"))
    try:
        result = mesh.run("materialize", "shop/stg_customers", "shop/customers_v1")
    finally:
        schema.write_text(good)
    output = _flat(result)
    assert result.returncode == 1, output[-3000:]
    assert (
        "shop/stg_customers: dbt unit test full_name_joins_first_and_last "
        "(models/staging/schema.yml) failed, so dbt did not build it" in output
    )
    assert (
        "shop/customers_v1: skipped: it needs what failed in this run: "
        "full_name_joins_first_and_last" in output
    )
    assert mesh.port("shop", "stg_customers").resolve() == before
    # The unit test is an asset check of its model, recorded as failed.
    catalog = mesh.run("catalog", "--json")
    products = {p["ref"]: p for p in json.loads(catalog.stdout)["products"]}
    stg = products["shop/stg_customers"]
    assert stg["checks"]["full_name_joins_first_and_last"] == "failed"
    assert not stg["healthy"]


def test_lint_fails_on_a_project_that_does_not_compile_and_the_catalog_shows_it_broken(
    mesh: Project, jaffle
):
    folder = mesh.root / "dbt_projects" / "jaffle_shop"
    before = _fingerprint(folder)
    linted = mesh.run("lint")
    assert linted.returncode == 0, _flat(linted)[-3000:]
    assert _fingerprint(folder) == before
    broken = folder / "models" / "marts" / "broken.sql"
    broken.write_text("select * from {{ ref('nothing_here') }}\n")
    try:
        linted = mesh.run("lint")
        catalog = mesh.run("catalog", "--json")
    finally:
        broken.unlink()
    output = _flat(linted)
    assert linted.returncode == 1, output
    assert "dbt project dbt_projects/jaffle_shop of domain shop does not compile" in output
    # dbt's whole message: the model, its file and the missing node.
    assert "models/marts/broken.sql" in output and "'nothing_here'" in output
    assert "comply with every policy" not in output
    domains = json.loads(catalog.stdout)["domains"]
    assert "nothing_here" in domains["shop"]["broken"]
    assert domains["shop"]["products"] == 0


def test_a_project_name_dbt_refuses_is_refused_with_dbts_message(tmp_path: Path):
    project = _new_project(tmp_path)
    folder = project.root / "dbt_projects" / "bakery"
    shutil.copytree(FIXTURES / "bakery", folder)
    settings = folder / "dbt_project.yml"
    settings.write_text(settings.read_text().replace("name: bakery", 'name: "bakery-shop"'))
    before = _fingerprint(folder)
    refused = project.run("new", "domain", "bakery", "--dbt-project", "dbt_projects/bakery")
    output = _flat(refused)
    assert refused.returncode == 2, output
    assert "dbt project dbt_projects/bakery of domain bakery does not compile" in output
    assert "'bakery-shop' does not match" in output
    assert _fingerprint(folder) == before
    assert not (project.root / "domains" / "bakery").exists()
    assert (project.root / "workspace.yaml").read_text() == "load_from: []\n"


def test_a_database_config_is_reported_as_not_adopted(tmp_path: Path):
    project = _new_project(tmp_path)
    folder = project.root / "dbt_projects" / "bakery"
    shutil.copytree(FIXTURES / "bakery", folder)
    settings = folder / "dbt_project.yml"
    settings.write_text(
        settings.read_text().replace(
            "      +materialized: table", "      +materialized: table\n      +database: archive"
        )
    )
    created = project.run("new", "domain", "bakery", "--dbt-project", "dbt_projects/bakery")
    output = _flat(created)
    assert created.returncode == 0, output
    not_adopted = output[output.index("Not adopted:") : output.index("wrote ")]
    assert "2 nodes with +database (daily_sales (archive), waste (archive)): not adopted" in (
        not_adopted
    )
