"""Policies by exposure: what no other domain may read answers only to the
domain-internal policies; what other domains may read, to every product
policy; a domain can still raise its own bar; what exposing would ask is
advice."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dagmesh import Domain
from dagmesh.declarations.spec import ColumnSpec, ProductSpec
from dagmesh.engine.governance import (
    EXPOSURE_POLICIES,
    exposure_advice,
    policy_violations,
)
from dagmesh.engine.mesh_view import MeshView

BARE = ProductSpec(
    "shop",
    "stg_orders",
    "dbt",
    "shop",
    "",  # no description
    "internal",
    [ColumnSpec("order_id", "BIGINT")],  # neither described nor classified
)


def _view(*specs: ProductSpec, domain: Domain | None = None, contracts=None) -> MeshView:
    domain = domain or Domain("shop", owner="shop", description="d")
    return MeshView(
        {"shop": domain},
        {s.ref: s for s in specs},
        {s.ref: (contracts or {}).get(s.ref) for s in specs},
    )


def _policies(view: MeshView) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for violation in policy_violations(view):
        found.setdefault(violation.product, set()).add(violation.policy)
    return found


@pytest.mark.parametrize(
    "spec",
    [
        BARE,
        replace(BARE, access="private"),
        replace(BARE, consumers=["shop"]),  # its own domain only
    ],
    ids=["internal", "private", "internal, consumed by itself"],
)
def test_a_product_no_other_domain_may_read_answers_only_to_internal_policies(spec):
    assert not spec.exposed
    assert _policies(_view(spec)) == {}


@pytest.mark.parametrize(
    "spec",
    [replace(BARE, access="public"), replace(BARE, consumers=["finance"])],
    ids=["public", "internal, read by finance"],
)
def test_a_product_other_domains_may_read_answers_to_every_product_policy(spec):
    assert spec.exposed
    found = _policies(_view(spec))[spec.ref]
    # No contract: the SLA policy has nothing to judge yet; the contract policy asks for one.
    assert found == {"description", "contract", "columns_documented", "public_blocking_check"}
    messages = [str(v) for v in policy_violations(_view(spec))]
    if spec.access == "internal":
        assert any("column 'order_id' of a product read by finance" in m for m in messages)
        assert any("is read by finance but has no blocking quality check" in m for m in messages)


def test_internal_products_still_need_an_owner_safe_names_and_a_valid_contract():
    spec = replace(BARE, owner=" ", columns=[ColumnSpec("Order Id", "BIGINT")])
    view = _view(spec)
    # A contract file that is there but wrong is a violation, exposed or not.
    view.contract_errors[spec.ref] = "stg_orders.odcs.yaml: quality rule 'meanCheck' is unknown"
    found = _policies(view)
    assert found == {spec.ref: {"owner", "safe_names", "contract"}}


def test_a_domain_policy_raises_the_bar_for_its_own_internals():
    domain = Domain("shop", owner="shop", description="d")

    @domain.policy("every product of shop is described, exposed or not")
    def described(spec):
        return [] if spec.description else [f"{spec.name} has no description"]

    violations = policy_violations(_view(BARE, domain=domain))
    assert [str(v) for v in violations] == [
        "shop/stg_orders: [shop.described] stg_orders has no description; fix: comply with: "
        "every product of shop is described, exposed or not"
    ]


def test_exposure_advice_says_what_exposing_would_ask_and_is_not_a_violation():
    exposed = replace(BARE, name="orders", access="public", description="Orders.")
    view = _view(BARE, exposed)
    advice = exposure_advice(view)
    assert {a.product for a in advice} == {"shop/stg_orders"}  # never the exposed one
    assert {a.policy for a in advice} <= set(EXPOSURE_POLICIES)
    assert "has no description" in [a.message for a in advice]
    assert "shop/stg_orders" not in _policies(view)
