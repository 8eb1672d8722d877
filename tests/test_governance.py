"""Federated computational governance, on a fixture mesh with one deliberate
violation per policy (tests/fixtures/governance): each is caught by
``dagmesh lint`` and at definitions load with the expected message; breaking
changes against the last published contract; names carrying SQL rejected."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dagmesh import Column, Domain
from dagmesh.declarations.spec import ColumnSpec, ProductSpec, python_spec
from dagmesh.engine.build import build_product
from dagmesh.engine.contracts.generate import dump, effective_contract
from dagmesh.engine.governance import GLOBAL_POLICIES, policy_violations
from dagmesh.engine.mesh_view import MeshView
from dagmesh.orchestration.resources import MeshStorage

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "governance"
DAGMESH = str(Path(sys.executable).with_name("dagmesh"))

EXPECTED = {
    "owner": "alpha/no_owner: [owner] has no owner team",
    "description": "alpha/undocumented: [description] has no description",
    "contract": "alpha/no_contract: [contract] has no data contract (no_contract.odcs.yaml is "
    "missing); fix: run `dagmesh contracts sync alpha`",
    "contract rule": "alpha/bad_rule: [contract] quality rule on column 'id': unknown library "
    "rule 'meanCheck'",
    "columns_documented": "alpha/bare_columns: [columns_documented] column 'amount' of a public "
    "product has no description",
    "classified": "alpha/bare_columns: [columns_documented] column 'amount' of a public product "
    "is not classified",
    "public_sla": "alpha/no_sla: [public_sla] is public but its contract has no freshness SLA",
    "public_blocking_check": "alpha/no_blocking: [public_blocking_check] is public but has no "
    "blocking quality check",
    "known_products": "gamma/orphan: [known_products] consumes delta/orders, but domain delta "
    "is neither in this repository nor in the mesh registry; fix: run `dagmesh register delta`",
    "access": "beta/peek: [access] consumes alpha/secret, which is private to alpha",
    "domain_cycles": "beta/loop_b: [domain_cycles] consumes gamma/loop_c, which closes a "
    "dependency cycle between domains: beta -> gamma -> beta",
    "domain policy": "alpha/tmp_scratch: [alpha.no_scratch_products] tmp_scratch looks like a "
    "scratch product",
    "contract_in_sync": "alpha/stale_contract: [contract_in_sync] contract out of date: column "
    "'id' physicalType is 'INTEGER' in the contract, 'BIGINT' in the declaration",
}


def _dagmesh(root: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGMESH_PROJECT": str(root), "DAGMESH_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    return subprocess.run(
        [DAGMESH, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture()
def mesh_copy(tmp_path: Path) -> Path:
    root = tmp_path / "mesh"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_lint_reports_one_line_per_violation_and_fails(mesh_copy: Path, tmp_path: Path):
    result = _dagmesh(mesh_copy, tmp_path / "home", "lint")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for policy, expected in EXPECTED.items():
        assert any(line.startswith(expected) for line in lines), (policy, result.stdout)
    # Every line names the product, the policy and the fix.
    assert all(": [" in line and "; fix: " in line for line in lines)
    # The compliant product and the deprecated one (itself compliant) raise nothing.
    assert not [line for line in lines if line.startswith(("alpha/good:", "alpha/old_feed:"))]
    # Each global policy is exercised by the fixture (safe_names: see the test
    # below; landing_paths: tests/test_grants.py).
    caught = {line.split("[", 1)[1].split("]", 1)[0] for line in lines}
    assert set(GLOBAL_POLICIES) - {"safe_names", "landing_paths"} <= caught
    assert "deprecated in contract 1.0.0 (sunset 2027-03-31); use alpha/good instead" in (
        " ".join(result.stderr.split())
    )


def _python(root: Path, home: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` as a code server would import the fixture's locations."""
    env = {**os.environ, "DAGMESH_PROJECT": str(root), "DAGMESH_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


REGISTER_FROM_CODE = """
import sys
from dagmesh import config
from dagmesh.engine.mesh_view import MeshView
from dagmesh.engine.registration import domain_interfaces
from dagmesh.engine.registry import Registry
from dagmesh.engine.workspace import load_mesh
mesh = MeshView.build(load_mesh())
registry = Registry(config.registry_dir())
for name in sys.argv[1:]:
    domain = mesh.domains[name]
    registry.write(name, domain.owner, domain.description, domain_interfaces(mesh, name))
"""


def _registered_as_declared(root: Path, home: Path, *domains: str) -> None:
    """Write the registry documents of ``domains`` from their code, as an
    earlier `dagmesh register` would have (the fixture's domains violate
    policies on purpose, so `dagmesh register` itself refuses them)."""
    env = {**os.environ, "DAGMESH_PROJECT": str(root), "DAGMESH_HOME": str(home)}
    subprocess.run(
        [sys.executable, "-c", REGISTER_FROM_CODE, *domains],
        cwd=root,
        env=env,
        check=True,
        timeout=300,
    )


def test_a_violation_stops_the_code_location_from_loading(mesh_copy: Path, tmp_path: Path):
    _registered_as_declared(mesh_copy, tmp_path, "alpha", "gamma")
    result = _python(mesh_copy, tmp_path, "import gov.beta.definitions")
    assert result.returncode == 1
    assert "GovernanceError: domain beta violates 2 governance policies" in result.stderr
    assert "- " + EXPECTED["access"] in result.stderr
    assert "- " + EXPECTED["domain_cycles"] in result.stderr
    # Consumers of a deprecated product are warned at load.
    assert "deprecated: beta/legacy_reader consumes alpha/old_feed" in result.stderr


def test_a_compliant_domain_loads(mesh_copy: Path, tmp_path: Path):
    for path in (mesh_copy / "gov" / "beta").glob("products.py"):
        text = path.read_text().replace('consumes=["alpha/secret"]', 'consumes=["alpha/good"]')
        text = text.replace("FROM secret", "FROM good").replace('"gamma/loop_c"', '"alpha/good"')
        path.write_text(text.replace("FROM loop_c", "FROM good"))
    _registered_as_declared(mesh_copy, tmp_path, "alpha")
    code = "import gov.beta.definitions as d; print(len(d.defs.assets))"
    result = _python(mesh_copy, tmp_path, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"


def test_a_domain_cannot_replace_a_global_policy():
    domain = Domain("delta", owner="delta", description="d")
    with pytest.raises(ValueError, match="'owner' is a global policy; a domain may add"):

        @domain.policy("owners are optional here")
        def owner(spec):
            return []

    assert domain.policies == {}


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (
            lambda d: d.sql_product(
                "orders; DROP TABLE x", description="d", columns=[Column("a", "INT", "a")], sql="1"
            ),
            "product 'orders; DROP TABLE x' is not a valid name",
        ),
        (lambda d: Column('a"; DROP TABLE x; --', "INT", "a"), "is not a valid name"),
        (
            lambda d: Column("a", "INT); DROP TABLE x; --", "a"),
            "column 'a': 'INT); DROP TABLE x; --' is not a DuckDB type",
        ),
        (
            lambda d: d.sql_product(
                "orders",
                description="d",
                columns=[Column("a", "INT", "a")],
                consumes={"o": "sales/orders' OR 1=1"},
                sql="1",
            ),
            'consumed product "sales/orders\' OR 1=1"',
        ),
    ],
    ids=["product name", "column name", "column type", "consumed product"],
)
def test_names_carrying_sql_are_rejected(declare, message):
    with pytest.raises(ValueError) as error:
        declare(Domain("delta", owner="delta", description="d"))
    assert message in str(error.value)


def test_safe_names_policy_catches_a_dbt_column_name():
    # dbt names are not validated when declared: the policy catches them.
    spec = ProductSpec(
        "delta", "orders", "dbt", "delta", "d", "internal", [ColumnSpec("Bad Name", "VARCHAR")]
    )
    delta = Domain("delta", owner="delta", description="d")
    view = MeshView({"delta": delta}, {spec.ref: spec}, {spec.ref: None})
    found = [str(v) for v in policy_violations(view) if v.policy == "safe_names"]
    assert found == [
        "delta/orders: [safe_names] column name 'Bad Name' is not a safe identifier; fix: use "
        "lower-case letters, digits and underscores, starting with a letter"
    ]


def _contract(root: Path, name: str) -> Path:
    return root / "gov" / "alpha" / "contracts" / f"{name}.odcs.yaml"


def _publish_good(root: Path, home: Path) -> None:
    """Publish alpha/good once, under its contract, through the platform."""
    code = f"""
import sys
sys.path.insert(0, {str(root)!r})
from gov.alpha.products import alpha
from dagmesh.engine.build import build_product
from dagmesh.engine.contracts.generate import effective_contract
from dagmesh.orchestration.resources import MeshStorage
from dagmesh.declarations.spec import python_spec
product = alpha.products["good"]
contract = effective_contract(alpha, python_spec(product))
result = build_product(product, MeshStorage(home={str(home)!r}), "run1", contract=contract)
assert result.published, result.failure_message
"""
    env = {**os.environ, "DAGMESH_PROJECT": str(root), "DAGMESH_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("remove", "column 'amount' removed (a rename counts as a removal"),
        ("rename", "column 'amount' removed"),
        ("narrow", "column 'amount' type narrowed from BIGINT to INTEGER"),
        ("require", "column 'amount' made required"),
        ("loosen", "column 'amount' classification loosened from pii to internal"),
    ],
)
def test_breaking_changes_fail_lint_unless_the_major_version_is_raised(
    mesh_copy: Path, tmp_path: Path, change: str, expected: str
):
    products = mesh_copy / "gov" / "alpha" / "products.py"
    text = products.read_text()
    published = text.replace(
        'product("good")',
        'product("good", columns=[ID, pii("amount", "BIGINT", "Amount.")], '
        'sql="SELECT 1::BIGINT AS id, 2::BIGINT AS amount")',
    ).replace("from dagmesh import Column, Domain", "from dagmesh import Column, Domain, pii")
    products.write_text(published)
    home = tmp_path / "home"
    assert _dagmesh(mesh_copy, home, "contracts", "sync", "alpha").returncode == 0
    _publish_good(mesh_copy, home)
    assert (home / "domains/alpha/ports/good/current/contract.yaml").is_file()

    new_column = {
        "remove": "",
        "rename": ', Column("total", "BIGINT", "Amount.", classification="pii")',
        "narrow": ', pii("amount", "INTEGER", "Amount.")',
        "require": ', pii("amount", "BIGINT", "Amount.", nullable=False)',
        "loosen": ', Column("amount", "BIGINT", "Amount.")',
    }[change]
    products.write_text(
        published.replace(', pii("amount", "BIGINT", "Amount.")', new_column).replace(
            ', sql="SELECT 1::BIGINT AS id, 2::BIGINT AS amount"', ""
        )
    )
    assert _dagmesh(mesh_copy, home, "contracts", "sync", "alpha").returncode == 0
    linted = _dagmesh(mesh_copy, home, "lint")
    line = next(
        (x for x in linted.stdout.splitlines() if x.startswith("alpha/good: [breaking_change]")),
        None,
    )
    assert line is not None, linted.stdout
    assert f"breaking change against published contract 1.0.0: {expected}" in line
    assert "raise the contract's major version (now 1.0.0)" in line

    contract = yaml.safe_load(_contract(mesh_copy, "good").read_text())
    contract["version"] = "2.0.0"
    _contract(mesh_copy, "good").write_text(dump(contract, "alpha/good"))
    linted = _dagmesh(mesh_copy, home, "lint")
    assert "alpha/good: [breaking_change]" not in linted.stdout


def test_adding_a_column_is_not_breaking(mesh_copy: Path, tmp_path: Path):
    home = tmp_path / "home"
    _publish_good(mesh_copy, home)
    products = mesh_copy / "gov" / "alpha" / "products.py"
    products.write_text(
        products.read_text().replace(
            'product("good")', 'product("good", columns=[ID, Column("extra", "INT", "New.")])'
        )
    )
    assert _dagmesh(mesh_copy, home, "contracts", "sync", "alpha").returncode == 0
    linted = _dagmesh(mesh_copy, home, "lint")
    assert "alpha/good:" not in linted.stdout


def test_the_sample_mesh_complies(tmp_path: Path):
    result = _dagmesh(REPO, tmp_path, "lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "17 products comply with every policy" in result.stderr


def test_effective_contract_takes_types_from_the_declaration(mesh_copy: Path, monkeypatch):
    # A stale file does not weaken what runs: the declaration's facts win.
    monkeypatch.setenv("DAGMESH_PROJECT", str(mesh_copy))
    monkeypatch.syspath_prepend(str(mesh_copy))
    alpha = Domain("alpha", owner="alpha", description="d")
    alpha.home_dir = mesh_copy / "gov" / "alpha"
    product = alpha.sql_product(
        "stale_contract",
        description="The stale_contract product.",
        columns=[Column("id", "BIGINT", "Identifier.", nullable=False)],
        primary_key="id",
        classification="internal",
        sql="SELECT 1::BIGINT AS id",
    )
    contract = effective_contract(alpha, python_spec(product))
    assert contract.table.properties[0].physicalType == "BIGINT"
    assert contract.freshness is not None
    result = build_product(product, MeshStorage(home=str(mesh_copy / "home")), "r", None, contract)
    assert result.published
