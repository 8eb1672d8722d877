"""The cross-location launcher's ordering rules, on a small graph."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from dagster import AssetKey, DagsterInstance

from dagmesh.orchestration.runner import (
    _planned,
    downstream_counts,
    locations_needed,
    ready_products,
)

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


def test_with_upstream_loads_only_the_domains_a_request_reads_from(mesh_home: Path):
    """As the registry knows each product's inputs, transitively."""
    weekly = locations_needed(["finance/weekly_delay_impact"], True)
    assert weekly == {"finance", "sales", "shipping"}
    assert locations_needed(["customers/customer_360"], True) == {
        "customers",
        "marketing",
        "sales",
        "shipping",
    }
    assert locations_needed(["sales/daily_revenue"], True) == {"sales"}
    assert locations_needed(["finance/refunds", "sales/orders"], False) == {"finance", "sales"}
    assert locations_needed([], True) is None  # everything


def test_a_registration_behind_the_code_falls_back_to_every_location(
    mesh_home: Path, tmp_path: Path, monkeypatch
):
    """finance's code reads shipping, its registration says it does not: the
    narrowed workspace would cut delay_costs' upstream short, so every
    location is loaded and shipping's products are planned too."""
    registry = tmp_path / "registry"
    shutil.copytree(mesh_home / "registry", registry)
    document = json.loads((registry / "finance.json").read_text())
    for product in document["products"].values():
        product["consumes"] = [r for r in product["consumes"] if not r.startswith("shipping/")]
    (registry / "finance.json").write_text(json.dumps(document))
    monkeypatch.setenv("DAGMESH_REGISTRY", str(registry))
    assert locations_needed(["finance/delay_costs"], True) == {"finance", "sales"}
    with (
        DagsterInstance.get() as instance,
        _planned(instance, ["finance/delay_costs"], True) as (context, keys, _, _),
    ):
        loaded = set(context.create_request_context().get_code_location_entries())
        assert {"finance", "sales", "shipping"} <= loaded
        assert AssetKey(["shipping", "shipping_delays"]) in keys
        assert AssetKey(["sales", "order_items"]) in keys


def test_a_workspaces_code_servers_start_together_and_a_broken_one_is_named(
    mesh_home: Path, tmp_path: Path
):
    """Two domains and a location whose code raises: the three code servers
    start at the same moment (Dagster alone starts each once the previous
    one has imported its code, a second or more apart), the two domains
    load, the broken location's error is its own, and no server outlives
    the workspace."""
    import psutil
    import yaml
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from dagmesh.orchestration.code_servers import loaded_workspace
    from tests.conftest import REPO

    broken = tmp_path / "broken_location.py"
    broken.write_text("raise RuntimeError('this location is broken on purpose')\n")
    entries = [
        {"python_module": {"module_name": f"domains.{d}.definitions", "location_name": d}}
        for d in ("sales", "shipping")
    ]
    entries.append({"python_file": {"relative_path": str(broken), "location_name": "broken"}})
    for entry in entries:
        next(iter(entry.values()))["working_directory"] = str(REPO)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": entries}))

    def code_servers() -> list[psutil.Process]:
        servers = []
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):  # one of an earlier test, gone
                if child.pid not in earlier and "grpc" in " ".join(child.cmdline()):
                    servers.append(child)
        return servers

    earlier = {p.pid for p in psutil.Process().children(recursive=True)}

    with (
        DagsterInstance.get() as instance,
        loaded_workspace(instance, WorkspaceFileTarget(paths=[str(workspace)])) as context,
    ):
        servers = code_servers()
        entries = context.create_request_context().get_code_location_entries()
        errors = {name: e.load_error for name, e in entries.items() if e.load_error}
        graph = context.create_request_context().asset_graph
    assert len(servers) == 3, [p.cmdline() for p in servers]
    started = sorted(p.create_time() for p in servers)
    assert started[-1] - started[0] < 1.0, started
    assert set(errors) == {"broken"}
    assert "this location is broken on purpose" in errors["broken"].to_string()
    assert AssetKey(["shipping", "shipping_delays"]) in graph.materializable_asset_keys
    assert AssetKey(["sales", "orders"]) in graph.materializable_asset_keys
    psutil.wait_procs(servers, timeout=60)
    assert not [p for p in servers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
