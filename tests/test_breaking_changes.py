"""Breaking-change detection between a published and a proposed data contract."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dagmesh.engine.contracts.breaking import (
    BreakingChange,
    breaking_changes,
    major,
    requires_major_bump,
)


def contract(version: str = "1.4.0", **overrides: dict[str, Any] | None) -> dict[str, Any]:
    """An ODCS v3 contract; ``overrides`` replace/add properties by column name (None drops)."""
    properties: dict[str, dict[str, Any]] = {
        "order_id": {
            "name": "order_id",
            "logicalType": "string",
            "physicalType": "VARCHAR",
            "required": True,
            "unique": True,
            "primaryKey": True,
            "classification": "internal",
            "description": "The order's identifier.",
        },
        "amount": {
            "name": "amount",
            "logicalType": "number",
            "physicalType": "DECIMAL(18,2)",
            "required": False,
            "classification": "internal",
        },
        "quantity": {
            "name": "quantity",
            "logicalType": "integer",
            "physicalType": "BIGINT",
            "classification": "internal",
        },
        "email": {
            "name": "email",
            "logicalType": "string",
            "physicalType": "VARCHAR",
            "classification": "pii",
        },
    }
    for name, prop in overrides.items():
        if prop is None:
            properties.pop(name, None)
        else:
            properties[name] = {"name": name, **properties.get(name, {}), **prop}
    return {
        "apiVersion": "v3.0.2",
        "kind": "DataContract",
        "id": "sales.orders",
        "version": version,
        "status": "active",
        "domain": "sales",
        "dataProduct": "orders",
        "schema": [{"name": "orders", "properties": list(properties.values())}],
    }


def only(changes: list[BreakingChange]) -> BreakingChange:
    assert len(changes) == 1, changes
    return changes[0]


PUBLISHED = contract()


# --- breaking ------------------------------------------------------------- #


def test_column_removed() -> None:
    change = only(breaking_changes(PUBLISHED, contract(quantity=None)))
    assert change.column == "quantity"
    assert change.rule == "column_removed"
    assert "'quantity'" in change.message and "removed" in change.message


def test_column_renamed_is_a_removal() -> None:
    amount = next(p for p in PUBLISHED["schema"][0]["properties"] if p["name"] == "amount")
    proposed = contract(amount=None, total_amount={**amount, "name": "total_amount"})
    change = only(breaking_changes(PUBLISHED, proposed))
    assert change.column == "amount"
    assert change.rule == "column_removed"
    assert "rename" in change.message
    assert "'total_amount'" in change.message


def test_bigint_to_integer_is_narrowed() -> None:
    change = only(breaking_changes(PUBLISHED, contract(quantity={"physicalType": "INTEGER"})))
    assert change.rule == "type_narrowed"
    assert change.message == "column 'quantity' type narrowed from BIGINT to INTEGER"


def test_decimal_precision_narrowed() -> None:
    change = only(breaking_changes(PUBLISHED, contract(amount={"physicalType": "DECIMAL(10,2)"})))
    assert change.column == "amount"
    assert change.rule == "type_narrowed"
    assert change.message == "column 'amount' type narrowed from DECIMAL(18,2) to DECIMAL(10,2)"


def test_decimal_scale_narrowed() -> None:
    change = only(breaking_changes(PUBLISHED, contract(amount={"physicalType": "DECIMAL(18,1)"})))
    assert change.rule == "type_narrowed"


def test_varchar_to_integer_is_breaking() -> None:
    change = only(breaking_changes(PUBLISHED, contract(order_id={"physicalType": "INTEGER"})))
    assert change.column == "order_id"
    assert change.rule == "type_narrowed"
    assert "VARCHAR" in change.message and "INTEGER" in change.message


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("INTEGER", "VARCHAR"),  # anything -> VARCHAR is a change of type
        ("DATE", "TIMESTAMP"),
        ("DOUBLE", "REAL"),
        ("INTEGER", "UINTEGER"),  # signed never fits unsigned
        ("UBIGINT", "BIGINT"),
        ("BIGINT", "DECIMAL(18,0)"),  # 19 digits needed
        ("INTEGER", "DECIMAL(10,2)"),  # 8 integer digits < 10
        ("DECIMAL(10,2)", "DOUBLE"),
        ("TIMESTAMP", "DATE"),
    ],
)
def test_other_type_changes_are_breaking(before: str, after: str) -> None:
    published = contract(quantity={"physicalType": before})
    change = only(breaking_changes(published, contract(quantity={"physicalType": after})))
    assert change.rule == "type_narrowed"
    assert before in change.message and after in change.message


def test_logical_type_fallback_when_physical_absent() -> None:
    published = contract(quantity={"physicalType": None, "logicalType": "number"})
    proposed = contract(quantity={"physicalType": None, "logicalType": "integer"})
    change = only(breaking_changes(published, proposed))
    assert change.message == "column 'quantity' type narrowed from number to integer"
    assert breaking_changes(proposed, published) == []


def test_optional_made_required() -> None:
    change = only(breaking_changes(PUBLISHED, contract(amount={"required": True})))
    assert change.column == "amount"
    assert change.rule == "made_required"
    assert "false" in change.message and "true" in change.message


def test_absent_required_made_required() -> None:
    change = only(breaking_changes(PUBLISHED, contract(email={"required": True})))
    assert change.rule == "made_required"
    assert "absent" in change.message


def test_classification_pii_to_internal() -> None:
    change = only(breaking_changes(PUBLISHED, contract(email={"classification": "internal"})))
    assert change.column == "email"
    assert change.rule == "classification_loosened"
    assert change.message == "column 'email' classification loosened from pii to internal"


def test_classification_pii_to_absent() -> None:
    proposed = contract()
    del proposed["schema"][0]["properties"][3]["classification"]
    change = only(breaking_changes(PUBLISHED, proposed))
    assert change.rule == "classification_loosened"
    assert "pii" in change.message and "absent" in change.message


def test_unknown_classification_is_treated_as_confidential() -> None:
    published = contract(email={"classification": "secret-ish"})
    assert breaking_changes(published, contract(email={"classification": "pii"})) == []
    assert breaking_changes(published, contract(email={"classification": "confidential"})) == []
    change = only(breaking_changes(published, contract(email={"classification": "internal"})))
    assert change.rule == "classification_loosened"


def test_several_breaking_changes_are_all_reported() -> None:
    proposed = contract(
        quantity=None,
        amount={"physicalType": "DECIMAL(10,2)", "required": True},
        email={"classification": "public"},
    )
    rules = [(c.column, c.rule) for c in breaking_changes(PUBLISHED, proposed)]
    assert rules == [
        ("amount", "type_narrowed"),
        ("amount", "made_required"),
        ("quantity", "column_removed"),
        ("email", "classification_loosened"),
    ]


# --- not breaking --------------------------------------------------------- #


def test_integer_to_bigint_is_a_widening() -> None:
    published = contract(quantity={"physicalType": "INTEGER"})
    assert breaking_changes(published, contract(quantity={"physicalType": "BIGINT"})) == []


def test_decimal_widening() -> None:
    published = contract(amount={"physicalType": "DECIMAL(10,2)"})
    assert breaking_changes(published, contract(amount={"physicalType": "DECIMAL(18,2)"})) == []


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("TINYINT", "SMALLINT"),
        ("SMALLINT", "HUGEINT"),
        ("UTINYINT", "USMALLINT"),
        ("UTINYINT", "SMALLINT"),
        ("UINTEGER", "BIGINT"),
        ("INTEGER", "DECIMAL(12,2)"),
        ("BIGINT", "DOUBLE"),
        ("REAL", "DOUBLE"),
        ("DECIMAL(10,2)", "DECIMAL(12,4)"),
        ("int", "INTEGER"),  # aliases and case
        ("INT8", "long"),
        ("text", "VARCHAR"),
        ("STRING", "varchar"),
        ("FLOAT8", "DOUBLE"),
        ("FLOAT4", "REAL"),
        ("DATETIME", "TIMESTAMP"),
        ("BOOL", "BOOLEAN"),
        ("decimal( 18 , 2 )", "DECIMAL(18,2)"),
        ("INT4", "INT8"),
    ],
)
def test_widenings_and_aliases_are_not_breaking(before: str, after: str) -> None:
    published = contract(quantity={"physicalType": before})
    assert breaking_changes(published, contract(quantity={"physicalType": after})) == []


def test_new_columns_are_not_breaking() -> None:
    proposed = contract(
        discount={"logicalType": "number", "physicalType": "DOUBLE"},
        channel={"logicalType": "string", "physicalType": "VARCHAR", "required": True},
    )
    assert breaking_changes(PUBLISHED, proposed) == []


def test_classification_tightened_is_not_breaking() -> None:
    proposed = contract(
        amount={"classification": "confidential"}, quantity={"classification": "pii"}
    )
    assert breaking_changes(PUBLISHED, proposed) == []


def test_description_change_is_not_breaking() -> None:
    proposed = copy.deepcopy(PUBLISHED)
    proposed["schema"][0]["properties"][0]["description"] = "Something else entirely."
    assert breaking_changes(PUBLISHED, proposed) == []


def test_required_made_optional_is_not_breaking() -> None:
    assert breaking_changes(PUBLISHED, contract(order_id={"required": False})) == []


def test_identical_contracts() -> None:
    assert breaking_changes(PUBLISHED, copy.deepcopy(PUBLISHED)) == []


# --- versions ------------------------------------------------------------- #


def test_major_bump_lets_breaking_change_pass() -> None:
    proposed = contract("2.0.0", quantity=None)
    assert breaking_changes(PUBLISHED, proposed)
    assert requires_major_bump(PUBLISHED, proposed) == []


def test_minor_bump_does_not() -> None:
    change = only(requires_major_bump(PUBLISHED, contract("1.5.0", quantity=None)))
    assert change.rule == "column_removed"


def test_no_breaking_changes_need_no_bump() -> None:
    assert requires_major_bump(PUBLISHED, contract("1.4.1", extra={"physicalType": "DATE"})) == []


@pytest.mark.parametrize(
    ("version", "expected"), [("1.2.0", 1), ("0.1.0", 0), ("12.0.3-rc.1+build.5", 12)]
)
def test_major(version: str, expected: int) -> None:
    assert major(version) == expected


@pytest.mark.parametrize("version", ["1.2", "v1.2.0", "one", "", "01.2.0", "1.2.0.0"])
def test_bad_semver_raises(version: str) -> None:
    with pytest.raises(ValueError, match="not a semantic version"):
        major(version)


def test_bad_semver_in_contract_raises() -> None:
    with pytest.raises(ValueError, match="not a semantic version"):
        requires_major_bump(PUBLISHED, contract("latest"))
