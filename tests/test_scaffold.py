"""Scaffolding in a fresh project: `dagmesh new domain` and `dagmesh new
product --sql|--python|--dbt` write code that passes `dagmesh lint`, its own
test and a real materialization at once; bad names change nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DAGMESH = str(Path(sys.executable).with_name("dagmesh"))
BAKERY = REPO / "tests" / "fixtures" / "dbt" / "bakery"


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "DAGMESH_PROJECT": str(root),
            "DAGMESH_HOME": str(root / ".dagmesh"),
        }
        self.env.pop("DAGSTER_HOME", None)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [DAGMESH, *args], cwd=self.root, env=self.env, capture_output=True, text=True
        )

    def text(self, result: subprocess.CompletedProcess) -> str:
        return " ".join((result.stdout + result.stderr).split())

    def snapshot(self) -> dict[str, str]:
        return {
            str(p.relative_to(self.root)): p.read_text()
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
            and ".dagmesh" not in p.parts
            and "build" not in p.parts
            and "__pycache__" not in p.parts
        }


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("scaffold_project")
    (root / "workspace.yaml").write_text("load_from: []\n")
    (root / "tests").mkdir()
    shutil.copytree(BAKERY, root / "dbt_projects" / "bakery")
    project = Project(root)
    created = project.run("new", "domain", "pantry", "--owner", "kitchen")
    assert created.returncode == 0, project.text(created)
    assert "Next: dagmesh materialize --all" in project.text(created)
    for kind, name in (("--sql", "recipes"), ("--python", "shopping_list")):
        added = project.run("new", "product", "pantry", name, kind)
        assert added.returncode == 0, project.text(added)
    return project


def test_a_new_domain_is_a_working_code_location(project: Project):
    pantry = project.root / "domains" / "pantry"
    assert sorted(p.name for p in pantry.iterdir() if p.name != "__pycache__") == [
        "__init__.py",
        "contracts",
        "definitions.py",
        "products.py",
    ]
    assert sorted(p.name for p in (pantry / "contracts").iterdir()) == [
        "calendar.odcs.yaml",
        "recipes.odcs.yaml",
        "shopping_list.odcs.yaml",
    ]
    workspace = yaml.safe_load((project.root / "workspace.yaml").read_text())
    assert workspace["load_from"] == [
        {"python_module": {"module_name": "domains.pantry.definitions", "location_name": "pantry"}}
    ]
    linted = project.run("lint")
    assert linted.returncode == 0, project.text(linted)
    assert "3 products comply with every policy" in project.text(linted)


def test_the_scaffolded_test_passes(project: Project):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "1 passed" in done.stdout


def test_scaffolded_products_materialize(project: Project):
    result = project.run("materialize", "--all")
    assert result.returncode == 0, project.text(result)[-3000:]
    for name in ("calendar", "recipes", "shopping_list"):
        assert f"✓ pantry/{name}" in project.text(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("new", "domain", "pantry"), "domain 'pantry' already exists"),
        (("new", "domain", "Bad-Name"), "domain 'Bad-Name' is not a valid name"),
        (("new", "product", "pantry", "recipes"), "pantry/recipes already exists"),
        (("new", "product", "pantry", "x; DROP TABLE y"), "is not a valid name"),
        (("new", "product", "nowhere", "x"), "no domain 'nowhere'"),
        (("new", "product", "pantry", "x", "--dbt"), "domain 'pantry' has no dbt project"),
        (("new", "product", "pantry", "x", "--sql", "--python"), "choose one of"),
        (("new", "product", "pantry", "p" * 300), "(300 characters) is too long"),
        (("new", "domain", "d" * 64), "a name has at most 63 characters"),
    ],
    ids=[
        "taken domain",
        "bad domain",
        "taken product",
        "bad product",
        "no domain",
        "no dbt",
        "two",
        "300-character product",
        "64-character domain",
    ],
)
def test_a_bad_name_gets_a_clear_error_and_changes_nothing(project: Project, args, message):
    before = project.snapshot()
    result = project.run(*args)
    assert result.returncode == 2
    assert message in project.text(result)
    assert project.snapshot() == before


def test_a_dbt_product_joins_the_domains_dbt_project(project: Project):
    adopted = project.run("new", "domain", "bakery", "--dbt-project", "dbt_projects/bakery")
    assert adopted.returncode == 0, project.text(adopted)
    for seed in ("raw_bakes", "raw_sales"):  # what governance asks of the adopted project
        path = project.root / "domains" / "bakery" / "contracts" / f"{seed}.odcs.yaml"
        document = yaml.safe_load(path.read_text())
        document["description"] = {"purpose": f"The bakery's {seed} export."}
        path.write_text(yaml.safe_dump(document, sort_keys=False))
    added = project.run("new", "product", "bakery", "specials", "--dbt")
    assert added.returncode == 0, project.text(added)
    models = project.root / "dbt_projects" / "bakery" / "models"
    assert (models / "specials.sql").is_file() and (models / "specials.yml").is_file()
    contract = yaml.safe_load(
        (project.root / "domains/bakery/contracts/specials.odcs.yaml").read_text()
    )
    assert [p["name"] for p in contract["schema"][0]["properties"]] == ["id"]
    assert contract["schema"][0]["properties"][0]["physicalType"] == "BIGINT"
    linted = project.run("lint")
    assert "bakery/specials" not in linted.stdout, linted.stdout
    built = project.run("materialize", "bakery/specials")
    assert built.returncode == 0, project.text(built)[-3000:]
    assert "✓ bakery/specials" in project.text(built)
