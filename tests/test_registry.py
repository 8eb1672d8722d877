"""The mesh registry: each domain publishes its product interfaces, and a
code location reads only its own code plus the registry entries of what it
consumes; so it loads, runs and deploys on its own."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import duckdb
import pytest

from dagmesh import Column, Domain
from dagmesh.engine.governance import GovernanceError
from dagmesh.engine.registry import MeshError, ProductInterface, Registry
from dagmesh.orchestration.definitions import domain_definitions
from tests.cli import flat
from tests.conftest import REPO

DAGMESH = str(Path(sys.executable).with_name("dagmesh"))
SITE_PACKAGES = sysconfig.get_paths()["purelib"]


def test_each_domain_has_a_document_any_tool_reads(mesh_home: Path, materialized):
    document = json.loads((mesh_home / "registry" / "customers.json").read_text())
    assert document["format"] == 1 and document["domain"] == "customers"
    assert document["owner"] == "customer-experience"
    profiles = document["products"]["customer_profiles"]
    assert profiles["key"] == ["customers", "customer_profiles"]
    assert profiles["owner"] == "customer-experience"
    assert profiles["description"]
    assert profiles["contract"]["version"] == "1.0.0"
    assert profiles["contract"]["status"] == "active"
    email = next(c for c in profiles["columns"] if c["name"] == "email")
    assert email["classification"] == "pii" and email["type"] == "VARCHAR"
    # dbt products are registered like Python ones, with their port sources.
    finance = json.loads((mesh_home / "registry" / "finance.json").read_text())
    delay_costs = finance["products"]["delay_costs"]
    assert delay_costs["kind"] == "dbt"
    assert set(delay_costs["consumes"]) >= {"shipping/shipping_delays", "sales/order_items"}
    # The port it names is the published data, readable with no dagmesh code.
    port = mesh_home / profiles["port"]["current"]
    rows = duckdb.connect().execute(f"SELECT count(*) FROM '{port}'").fetchone()[0]
    assert rows > 0


def test_registering_again_changes_nothing_and_a_change_is_written(mesh_home: Path, tmp_path):
    registry = Registry(tmp_path / "registry")
    shutil.copytree(mesh_home / "registry", registry.folder)
    before = {p.name: p.read_bytes() for p in registry.folder.iterdir()}
    from dagmesh.engine.registration import register_domains

    outcome = register_domains(registry)
    assert outcome.written == [] and not outcome.refused
    assert sorted(outcome.unchanged) == ["customers", "finance", "marketing", "sales", "shipping"]
    assert {p.name: p.read_bytes() for p in registry.folder.iterdir()} == before

    entry = registry.domain("sales")
    orders = entry.products["orders"]
    changed = ProductInterface(**{**orders.__dict__, "description": "Changed."})
    assert registry.write("sales", entry.owner, entry.description, [changed])
    assert Registry(registry.folder).product("sales/orders").description == "Changed."
    assert not [p for p in registry.folder.iterdir() if p.name.startswith(".")]  # no temp left


def _analytics(consumes: list[str]) -> Domain:
    analytics = Domain("analytics", owner="bi", description="Reporting.")
    analytics.sql_product(
        "late_orders",
        description="Late orders.",
        columns=[Column("order_id", "VARCHAR", "Order.")],
        consumes=consumes,
        sql="SELECT 1",
    )
    return analytics


def test_an_unregistered_producer_fails_the_load_naming_both_and_the_command(
    mesh_home: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("DAGMESH_REGISTRY", str(tmp_path / "empty"))
    with pytest.raises(MeshError) as error:
        domain_definitions(_analytics(["sales/orders"]))
    message = str(error.value)
    assert "analytics/late_orders consumes 'sales/orders'" in message
    assert "domain 'sales' is not registered" in message
    assert "run `dagmesh register sales`" in message


def _write_foreign(folder: Path, domain: str, products: dict[str, dict]) -> None:
    """A registry document as another repository's CI would publish it:
    plain JSON, no dagmesh code."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = {
        name: {"domain": domain, "name": name, "kind": "sql", "owner": domain, **fields}
        for name, fields in products.items()
    }
    document = {"format": 1, "domain": domain, "owner": domain, "products": entries}
    (folder / f"{domain}.json").write_text(json.dumps(document))


def test_access_deprecation_and_cycles_are_judged_from_the_registry(
    tmp_path: Path, monkeypatch, caplog
):
    registry = tmp_path / "registry"
    _write_foreign(
        registry,
        "vault",
        {
            "keys": {"access": "private"},
            "old_feed": {
                "access": "public",
                "contract": {
                    "version": "2.1.0",
                    "status": "deprecated",
                    "sunset": "2027-03-31",
                    "replaced_by": "vault/new_feed",
                },
            },
            "echo": {"access": "public", "consumes": ["analytics/late_orders"]},
        },
    )
    monkeypatch.setenv("DAGMESH_REGISTRY", str(registry))
    analytics = _analytics(["vault/keys", "vault/old_feed", "vault/echo"])
    with caplog.at_level(logging.WARNING, logger="dagmesh"), pytest.raises(GovernanceError) as e:
        domain_definitions(analytics)
    message = str(e.value)
    assert "analytics/late_orders: [access] consumes vault/keys, which is private to vault" in (
        message
    )
    assert (
        "[domain_cycles] consumes vault/echo, which closes a dependency cycle between "
        "domains: analytics -> vault -> analytics"
    ) in message
    assert (
        "analytics/late_orders consumes vault/old_feed, deprecated in contract 2.1.0 "
        "(sunset 2027-03-31); use vault/new_feed instead"
    ) in caplog.text


def test_a_malformed_registry_document_names_the_file(tmp_path: Path, monkeypatch):
    (tmp_path / "sales.json").write_text('{"format": 1, "products": ')
    monkeypatch.setenv("DAGMESH_REGISTRY", str(tmp_path))
    with pytest.raises(MeshError, match=r"registry document .*sales\.json cannot be read"):
        domain_definitions(_analytics(["sales/orders"]))


def test_a_domain_deploys_alone_with_the_platform_and_the_registry(
    mesh_home: Path, materialized, tmp_path: Path
):
    """One consuming domain's package, a copy of the platform and the
    registry in a fresh folder, run by an interpreter that sees only those
    and the third-party libraries (``-S``: no editable install of this
    repository): it loads, runs, and reads sales' published orders."""
    image = tmp_path / "image"
    shutil.copytree(REPO / "platform" / "dagmesh", image / "platform" / "dagmesh")
    (image / "domains").mkdir()
    shutil.copy(REPO / "domains" / "__init__.py", image / "domains")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "domains" / "shipping", image / "domains" / "shipping", ignore=ignore)
    (image / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: domains.shipping.definitions\n"
        "      location_name: shipping\n"
    )
    # The mesh's shared storage as this deployment sees it: the registry,
    # sales' published ports, shipping's landing files.
    shared = tmp_path / "shared"
    shutil.copytree(mesh_home / "registry", shared / "registry")
    shutil.copytree(
        mesh_home / "domains" / "sales" / "ports",
        shared / "domains" / "sales" / "ports",
        symlinks=True,  # `current` is a link to the version consumers read
    )
    shutil.copytree(mesh_home / "landing" / "warehouse", shared / "landing" / "warehouse")
    orders_version = (shared / "domains/sales/ports/orders/current").resolve().name
    script = """
import sys
import dagster as dg
import domains.shipping.definitions as location
import dagmesh
assert dagmesh.__file__.startswith(sys.argv[1]), dagmesh.__file__
try:
    import domains.sales
    print("imported another domain:", domains.sales.__file__)
except ModuleNotFoundError:
    pass
print("domains imported:", sorted(m for m in sys.modules if m.startswith("domains.")))
with dg.DagsterInstance.get() as instance:
    result = location.defs.get_job_def("shipping_products").execute_in_process(instance=instance)
print("success:", result.success)
"""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(image), str(image / "platform"), SITE_PACKAGES]),
        "DAGMESH_PROJECT": str(image),
        "DAGMESH_HOME": str(shared),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "DAGMESH_PII_KEY": os.environ.get("DAGMESH_PII_KEY", ""),
    }
    (tmp_path / "dagster").mkdir()
    result = subprocess.run(
        [sys.executable, "-S", "-c", script, str(image)],
        cwd=image,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "imported another domain" not in result.stdout
    assert (
        "domains imported: ['domains.shipping', 'domains.shipping.definitions', "
        "'domains.shipping.products']" in result.stdout
    )
    assert "success: True" in result.stdout
    published = shared / "domains/shipping/ports/shipping_delays/current"
    record = json.loads((published / "version.json").read_text())
    assert orders_version in record["inputs"].values()
    rows = duckdb.connect().execute(f"SELECT count(*) FROM '{published}/data.parquet'").fetchone()
    assert rows[0] > 0


def test_a_domain_that_does_not_import_stops_only_its_own_location(tmp_path: Path):
    """A fresh project with two scaffolded domains; one's products.py raises
    at import: the other still registers, loads and materializes, and
    `materialize --all` reports the broken one and exits 1."""
    root = tmp_path / "project"
    (root / "domains").mkdir(parents=True)
    (root / "domains" / "__init__.py").write_text("")
    (root / "workspace.yaml").write_text("load_from: []\n")
    env = {
        **os.environ,
        "DAGMESH_PROJECT": str(root),
        "DAGMESH_HOME": str(root / ".dagmesh"),
        "DAGSTER_HOME": str(root / ".dagmesh" / "dagster"),
        "COLUMNS": "200",
    }

    def dagmesh(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [DAGMESH, *args], cwd=root, env=env, capture_output=True, text=True, timeout=600
        )

    for name in ("atlas", "broken"):
        created = dagmesh("new", "domain", name)
        assert created.returncode == 0, created.stderr
    products = root / "domains" / "broken" / "products.py"
    products.write_text("import a_module_that_does_not_exist\n" + products.read_text())

    registered = dagmesh("register")
    assert registered.returncode == 1
    output = flat(registered)
    assert "✓ atlas" in output
    assert "✗ broken: not registered" in output
    assert "ModuleNotFoundError" in output and "a_module_that_does_not_exist" in output

    linted = dagmesh("lint")
    assert linted.returncode == 1
    assert "domain broken not checked: domains.broken.products does not import" in flat(linted)

    result = dagmesh("materialize", "--all")
    output = flat(result)
    assert result.returncode == 1, output
    assert "FAILED to load code location broken" in output
    assert "a_module_that_does_not_exist" in output
    assert "✓ atlas/calendar" in output
    assert (root / ".dagmesh/domains/atlas/ports/calendar/current/data.parquet").exists()
