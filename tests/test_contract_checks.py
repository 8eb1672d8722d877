"""A contract's quality rules as checks: error rules block publication (the
last good version stays), warning rules report and publish."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from dagmesh import Column, Domain, pii
from dagmesh.declarations.contract import Contract
from dagmesh.engine.build import build_product
from dagmesh.orchestration.assets import product_asset
from dagmesh.orchestration.resources import MeshStorage

GOOD = "SELECT * FROM (VALUES (1, 'a@x.com', 'gold'), (2, 'b@x.com', 'silver')) t(id, email, tier)"
BAD = (
    "SELECT * FROM (VALUES (1, 'a@x.com', 'gold'), (2, 'b@x.com', 'bronze'), "
    "(2, 'c@x.com', NULL)) t(id, email, tier)"
)


def _product(sql: str):
    shop = Domain("shop", owner="shop", description="A shop.")
    return shop.sql_product(
        "customers",
        description="Customers.",
        columns=[
            Column("id", "INTEGER", "Id.", classification="internal"),
            pii("email", "VARCHAR", "Email."),
            Column("tier", "VARCHAR", "gold or silver.", classification="internal"),
        ],
        sql=sql,
    )


def _contract(table_rules=(), tier_rules=(), id_rules=()) -> Contract:
    return Contract.model_validate(
        {
            "id": "shop.customers",
            "domain": "shop",
            "dataProduct": "customers",
            "version": "1.2.0",
            "schema": [
                {
                    "name": "customers",
                    "quality": list(table_rules),
                    "properties": [
                        {"name": "id", "quality": list(id_rules)},
                        {"name": "tier", "quality": list(tier_rules)},
                    ],
                }
            ],
        }
    )


@pytest.mark.parametrize(
    ("contract", "expected"),
    [
        (
            _contract(tier_rules=[{"rule": "validValues", "validValues": ["gold", "silver"]}]),
            "shop/customers: column 'tier' violates validValues (tier_valid_values): measured 1, "
            "expected mustBe 0 (allowed: ['gold', 'silver']); failing rows (personal data "
            "masked): [{'id': '2', 'email': '***', 'tier': 'bronze'}]",
        ),
        (
            _contract(table_rules=[{"rule": "rowCount", "mustBeBetween": [1, 2]}]),
            "shop/customers: table violates rowCount (row_count): measured 3, expected "
            "mustBeBetween [1.0, 2.0]",
        ),
        (
            _contract(id_rules=[{"rule": "duplicateCount", "mustBe": 0}]),
            "shop/customers: column 'id' violates duplicateCount (id_duplicate_count): measured 2",
        ),
        (
            _contract(tier_rules=[{"rule": "nullCheck"}]),
            "shop/customers: column 'tier' violates nullCheck (tier_null_check): measured 1",
        ),
        (
            _contract(
                table_rules=[
                    {
                        "type": "sql",
                        "name": "every_row_has_a_known_tier",
                        "query": "SELECT count(*) FROM ${object} "
                        "WHERE coalesce(tier, '') NOT IN ('gold', 'silver')",
                        "mustBeLessOrEqualTo": 0,
                    }
                ]
            ),
            "shop/customers: table violates sql rule every_row_has_a_known_tier "
            "(every_row_has_a_known_tier): measured 2, expected mustBeLessOrEqualTo 0.0",
        ),
    ],
    ids=["validValues", "rowCount", "duplicateCount", "nullCheck", "sql"],
)
def test_an_error_rule_blocks_publication_and_keeps_the_last_good_version(
    tmp_path: Path, contract: Contract, expected: str
):
    mesh = MeshStorage(home=str(tmp_path))
    good = build_product(_product(GOOD), mesh, "run-good", contract=contract)
    assert good.published
    port = mesh.port("shop", "customers")
    assert port.require_current().info()["contract_version"] == "1.2.0"
    bad = build_product(_product(BAD), mesh, "run-bad", contract=contract)
    assert not bad.published
    assert bad.failure_message.startswith(expected), bad.failure_message
    assert "b@x.com" not in bad.failure_message and "c@x.com" not in bad.failure_message
    assert port.require_current().version == good.version


def test_a_warning_rule_reports_and_publishes(tmp_path: Path):
    contract = _contract(
        tier_rules=[
            {"rule": "validValues", "validValues": ["gold", "silver"], "severity": "warning"}
        ]
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [product_asset(_product(BAD), contract)],
            resources={"mesh": MeshStorage(home=str(tmp_path))},
            instance=instance,
        )
    assert result.success
    [evaluation] = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "tier_valid_values"
    ]
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert MeshStorage(home=str(tmp_path)).port("shop", "customers").current() is not None


def test_a_rule_without_a_bound_is_not_run_and_lint_says_why():
    from dagmesh.declarations.contract import QualityRule
    from dagmesh.engine.contracts.rules import quality_checks, rule_problems

    rule = QualityRule(type="sql", query="SELECT 1 FROM ${object}")
    assert rule_problems(None, rule) == ["a sql rule needs a bound (mustBe, mustBeLessThan...)"]
    contract = _contract(table_rules=[rule.model_dump(exclude_none=True)])
    assert quality_checks(contract) == {}


def test_the_retention_sla_removes_expired_versions_but_never_the_current(tmp_path: Path):
    import os
    import time

    contract = _contract()
    contract.slaProperties = [{"property": "retention", "value": 1, "unit": "d"}]
    contract = Contract.model_validate(contract.model_dump(by_alias=True))
    mesh = MeshStorage(home=str(tmp_path))
    port = mesh.port("shop", "customers")
    first = build_product(_product(GOOD), mesh, "run-1", contract=contract)
    second = build_product(_product(GOOD), mesh, "run-2", contract=contract)
    assert [v.version for v in port.versions()] == [first.version, second.version]
    two_days_ago = time.time() - 2 * 86400
    for version in port.versions():
        os.utime(version.path / "version.json", (two_days_ago, two_days_ago))
    third = build_product(_product(GOOD), mesh, "run-3", contract=contract)
    assert [v.version for v in port.versions()] == [third.version]
    # Even expired, the current version stays when nothing newer was published.
    os.utime(port.require_current().path / "version.json", (two_days_ago, two_days_ago))
    port.prune(5, contract.retention)
    assert port.require_current().version == third.version
