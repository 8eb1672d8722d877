"""The cross-location launcher's ordering rules, on a small graph."""

from __future__ import annotations

from dagster import AssetKey

from dagmesh.orchestration.runner import downstream_counts, ready_products

A, B, C, D, E = (
    AssetKey(["sales", "a"]),
    AssetKey(["sales", "b"]),
    AssetKey(["shipping", "c"]),
    AssetKey(["shipping", "d"]),
    AssetKey(["finance", "e"]),
)
PARENTS = {A: set(), B: {A}, C: set(), D: {B, C}, E: {D}}
LOCATION = {A: "sales", B: "sales", C: "shipping", D: "shipping", E: "finance"}
KEYS = [A, B, C, D, E]


def test_a_domain_runs_once_when_its_inputs_from_other_domains_are_done():
    # Sales needs nothing from others: a and b in one run. Shipping's d needs
    # sales/b, so all of shipping (c too) waits and then runs together.
    assert ready_products(KEYS, PARENTS, LOCATION, done=set(), unavailable=set()) == [A, B]
    assert ready_products(KEYS, PARENTS, LOCATION, done={A, B}, unavailable=set()) == [C, D]
    assert ready_products(KEYS, PARENTS, LOCATION, done={A, B, C, D}, unavailable={E}) == []


def test_the_product_blocking_the_most_goes_first():
    counts = downstream_counts(PARENTS)
    assert counts == {A: 3, B: 2, C: 2, D: 1, E: 0}
