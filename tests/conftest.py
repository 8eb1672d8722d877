"""Shared fixtures: a real data directory, a real Dagster instance, the real workspace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.environment import environment

REPO = Path(__file__).resolve().parents[1]
SCALE = 5_000
# Only for the test mesh: the keyed hash of joinable PII columns needs a secret.
TEST_PII_KEY = "pytest-only-pii-key"


@pytest.fixture(scope="session")
def mesh_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh DAGMESH_HOME (and DAGSTER_HOME inside it) with generated sources."""
    from dagmesh.orchestration.instance import ensure_dagster_home
    from source_systems.generator import generate

    home = tmp_path_factory.mktemp("dagmesh_home")
    env = {
        "DAGMESH_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "DAGMESH_PROJECT": str(REPO),
        "DAGMESH_PII_KEY": TEST_PII_KEY,
    }
    with environment(env):
        ensure_dagster_home()
        generate(home / "landing", scale=SCALE, seed=7)
        prepare_dbt_projects(home)
        register_domains_of_the_workspace()
        yield home


def prepare_dbt_projects(home: Path) -> None:
    """Parse every domain's dbt project into its manifest before any code
    location loads (``DbtProject.prepare_if_dev`` does nothing outside
    ``dagster dev``; CI prepares explicitly, as a deployment would)."""
    from dagmesh.engine.dbt.project import dbt_project
    from dagmesh.engine.workspace import load_mesh

    for domain in load_mesh().values():
        project = dbt_project(domain)
        if project is not None:
            project.prepare(home)


def register_domains_of_the_workspace() -> None:
    """Publish every domain's interfaces to the registry, as `dagmesh dev`,
    CI and a deployment do before code locations load."""
    from dagmesh import config
    from dagmesh.engine.registration import register_domains
    from dagmesh.engine.registry import Registry

    outcome = register_domains(Registry(config.registry_dir()))
    assert not outcome.refused, outcome.refused


@pytest.fixture(scope="session")
def truth(mesh_home: Path) -> dict:
    """What the generator knows about the sources it wrote."""
    return json.loads((mesh_home / "landing" / "_truth.json").read_text())


@pytest.fixture(scope="session")
def materialized(mesh_home: Path):
    """The whole mesh materialized once through `dagmesh materialize --all`'s code path."""
    from dagmesh.orchestration.runner import materialize

    outcome = materialize(timeout=600)
    assert outcome.success, [f"{f.product}: {f.message}" for f in outcome.failures]
    return outcome


def port_file(home: Path, ref: str) -> str:
    """The published data file of ``domain/product``, as any tool would open it."""
    domain, name = ref.split("/")
    return str(home / "domains" / domain / "ports" / name / "current" / "data.parquet")


def query(sql: str) -> list[tuple]:
    """Run SQL in a throwaway DuckDB (no dagmesh code involved)."""
    return duckdb.connect().execute(sql).fetchall()
