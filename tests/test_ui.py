"""The Dagster UI in a real browser: `dagster dev` (webserver and daemon)
serves the materialized sample mesh on 127.0.0.1, and Debian's chromium,
driven headless by Playwright, checks what an operator sees. Screenshots go
to test-artifacts/ui/ (or $DAGMESH_TEST_ARTIFACTS)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from tests.conftest import REPO
from tests.processes import graphql

CHROMIUM = "/usr/bin/chromium"
# Chromium on a machine with no network: no background calls home, no sandbox as root.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("DAGMESH_TEST_ARTIFACTS", REPO / "test-artifacts")) / "ui"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(materialized, mesh_home: Path) -> Iterator[str]:
    """`dagster dev` as `dagmesh dev` runs it: the domains' workspace and the
    platform's own location `mesh` (cross-domain materializations)."""
    from dagmesh.engine.workspace import mesh_workspace_file

    port = _free_port()
    dagster = Path(sys.executable).with_name("dagster")
    (mesh_home / "logs").mkdir(exist_ok=True)
    log = open(mesh_home / "logs" / "ui-test.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [
            str(dagster),
            "dev",
            "-w",
            str(REPO / "workspace.yaml"),
            "-w",
            str(mesh_workspace_file()),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"dagster dev did not start; see {log.name}") from None
                time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser(ui):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), (
        "install Debian's chromium: make test (scripts/ensure-chromium) does"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(autouse=True)
def _pages_closed_after_each_test(request):
    """An open Dagster page polls the webserver every 2 s and renders what
    changed: pages left open by earlier tests slow every later one."""
    yield
    if "browser" in request.fixturenames:
        for context in request.getfixturevalue("browser").contexts:
            context.close()


def _open(browser, url: str, shot: str):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    # Dagster's first-visit newsletter dialog may open at any moment and cover
    # the page: dismiss it whenever it shows up before an action.
    skip = page.get_by_role("button", name="Skip")
    page.add_locator_handler(skip, lambda button: button.click())
    page.goto(url, wait_until="networkidle", timeout=120_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
    return page


def test_the_global_lineage_shows_every_domain(ui, browser):
    page = _open(browser, f"{ui}/asset-groups", "global-lineage")
    text = page.inner_text("body")
    for domain, products in {
        "sales": 3,
        "shipping": 5,
        "marketing": 4,
        "customers": 2,
        "finance": 3,
    }.items():
        assert f"{domain}\n{products}" in text, domain
    # Edges between the domain groups are drawn.
    assert page.locator("svg path").count() >= 10
    # Opening each domain in the sidebar lists its products by name.
    for domain in ("sales", "shipping", "marketing", "customers", "finance"):
        page.get_by_text(domain, exact=True).first.click()
        page.keyboard.press("ArrowRight")  # the sidebar is a tree: right opens the group
        page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "global-lineage-open.png"), full_page=True)
    labels = set(page.inner_text("body").splitlines())
    assert {
        "orders",
        "order_items",
        "daily_revenue",
        "shipments",
        "returns",
        "shipping_delays",
        "crm_leads",
        "lead_attribution",
        "ad_audiences",
        "audience_exports",
        "customer_profiles",
        "customer_360",
        "refunds",
        "delay_costs",
        "weekly_delay_impact",
    } <= labels, sorted(labels)


def test_a_consumer_lineage_crosses_domains(ui, browser):
    page = _open(
        browser,
        f"{ui}/assets/customers/customer_360?view=lineage&lineageScope=upstream",
        "customer_360-upstream",
    )
    # On a loaded machine the graph renders after the page is idle.
    page.get_by_text("lead_attribution", exact=True).first.wait_for(timeout=60_000)
    labels = set(page.inner_text("body").splitlines())
    assert {"orders", "order_items", "shipping_delays", "lead_attribution"} <= labels
    assert {"sales", "shipping", "marketing", "customers"} <= labels


def test_a_product_page_shows_owner_columns_and_checks(ui, browser):
    page = _open(browser, f"{ui}/assets/sales/orders", "sales-orders")
    text = page.inner_text("body")
    assert "One row per order" in text
    for column in ("order_id", "customer_id", "promised_delivery_date", "event_count"):
        assert column in text, column
    assert "sales" in text.split("Owners", 1)[1][:200]
    checks = _open(browser, f"{ui}/assets/sales/orders?view=checks", "sales-orders-checks")
    # On a loaded machine the checks list renders after the page is idle.
    checks.get_by_text("status_valid_values").first.wait_for(timeout=60_000)
    text = checks.inner_text("body")
    assert "Checks (5)" in text
    for check in ("schema", "not_null", "primary_key", "row_count", "status_valid_values"):
        assert check in text, check
    assert "Succeeded" in text


def test_a_materialization_launched_from_the_ui_succeeds(ui, browser, mesh_home):
    key = AssetKey(["sales", "daily_revenue"])
    with DagsterInstance.get() as instance:
        before = instance.get_latest_materialization_event(key).timestamp
    page = _open(browser, f"{ui}/assets/sales/daily_revenue", "daily_revenue-before")
    page.get_by_text("Materialize", exact=True).first.click()
    deadline = time.monotonic() + 240
    with DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            event = instance.get_latest_materialization_event(key)
            if event.timestamp > before:
                break
            time.sleep(2)
        assert event.timestamp > before, "no new materialization of sales/daily_revenue"
        # The materialization is recorded before the run itself finishes.
        while time.monotonic() < deadline:
            run = instance.get_runs(RunsFilter(run_ids=[event.run_id]))[0]
            if run.is_finished:
                break
            time.sleep(1)
    assert run.status == DagsterRunStatus.SUCCESS
    page.goto(f"{ui}/runs/{event.run_id}", wait_until="networkidle")
    page.wait_for_timeout(2000)
    page.screenshot(path=str(ARTIFACTS / "daily_revenue-run.png"), full_page=True)
    assert "Success" in page.inner_text("body")


# ---------------------------------------------------------------------------
# Cross-domain materializations on the sample mesh (location `mesh`).
# ---------------------------------------------------------------------------

LOCK_ERROR = "Could not set lock"
IN_PROGRESS = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def _port(home: Path, ref: str) -> Path:
    domain, name = ref.split("/")
    return home / "domains" / domain / "ports" / name


def _current(home: Path, ref: str) -> str | None:
    """The product's current published version (None: never published)."""
    current = _port(home, ref) / "current"
    return current.resolve().name if current.exists() else None


def _products(home: Path) -> list[str]:
    """Every product with a published port."""
    return sorted(f"{p.parts[-3]}/{p.name}" for p in home.glob("domains/*/ports/*") if p.is_dir())


def _wait_for(ready, seconds: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := ready():
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def _finished(instance: DagsterInstance, run_id: str, seconds: float = 600):
    return _wait_for(
        lambda: (r := instance.get_run_by_id(run_id)) and r.is_finished and r, seconds, run_id
    )


def _launch(ui: str, location: str, job: str, run_config: dict, **selection) -> str:
    """A launchRun through the webserver, as the UI sends it; the run id."""
    from dagmesh.orchestration.runner import LAUNCH_RUN

    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "jobName": job,
            **selection,
        },
        "runConfigData": run_config,
    }
    launched = graphql(ui, LAUNCH_RUN, {"params": params}, timeout=120)["data"]["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _materialize_button(ui: str, refs: list[str]) -> str:
    """What the asset page's Materialize button launches: the domain's asset job."""
    location = refs[0].split("/")[0]
    keys = [{"path": ref.split("/")} for ref in refs]
    return _launch(ui, location, "__ASSET_JOB", {}, assetSelection=keys)


def _request(ui: str, refs: list[str], with_upstream: bool) -> str:
    """A cross-domain materialization, as the mesh job's launchpad launches it."""
    request = {"products": refs, "with_upstream": with_upstream}
    config = {"ops": {"materialize_across_domains": {"config": request}}}
    return _launch(ui, "mesh", "materialize_products", config)


def _domain_runs(instance: DagsterInstance, materialization: str) -> list:
    return list(instance.get_runs(RunsFilter(tags={"dagmesh/materialization": materialization})))


def _published(instance: DagsterInstance, run_id: str) -> dict[str, tuple[str, int]]:
    """What a run published: product → (version, rows), from its materializations."""
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    published = {}
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        metadata = materialization.metadata
        published["/".join(materialization.asset_key.path)] = (
            metadata["dagmesh/version"].value,
            metadata["dagster/row_count"].value,
        )
    return published


def _log_text(instance: DagsterInstance, run_id: str) -> str:
    """Every event of a run, messages and errors included, as one text."""
    from dagster_shared.serdes import serialize_value

    return "\n".join(serialize_value(entry) for entry in instance.all_logs(run_id))


def _span(instance: DagsterInstance, run_id: str) -> tuple[float, float]:
    record = instance.get_run_record_by_id(run_id)
    return record.start_time, record.end_time


def _step_spans(instance: DagsterInstance, run_id: str) -> list[tuple[float, float]]:
    """When each step of a run started and ended."""
    kinds = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}
    started, ended = {}, {}
    for record in instance.get_records_for_run(run_id, of_type=kinds).records:
        entry = record.event_log_entry
        side = started if entry.dagster_event_type == DagsterEventType.STEP_START else ended
        side[entry.step_key] = entry.timestamp
    return [(started[k], ended[k]) for k in started]


def _assert_built_once_per_request(
    instance: DagsterInstance, home: Path, ref: str, before: str | None, runs: list[str]
) -> None:
    """Each run published its own complete version of ``ref``; the current
    port is one of them and reads back whole; no run met a DuckDB lock."""
    versions = {}
    for run_id in runs:
        published = _published(instance, run_id)
        assert ref in published, (run_id, published)
        versions[run_id] = published[ref]
    assert len({v for v, _ in versions.values()}) == len(runs), versions
    assert before not in {v for v, _ in versions.values()}
    port = _port(home, ref)
    for run_id, (version, rows) in versions.items():
        folder = port / "versions" / version
        assert {"data.parquet", "version.json", "contract.yaml"} <= {
            p.name for p in folder.iterdir()
        }, version
        assert json.loads((folder / "version.json").read_text())["run_id"] == run_id
        read = duckdb.connect().execute(f"SELECT count(*) FROM '{folder}/data.parquet'")
        assert read.fetchone()[0] == rows
    assert _current(home, ref) in {v for v, _ in versions.values()}
    current = duckdb.connect().execute(f"SELECT count(*) FROM '{port}/current/data.parquet'")
    assert current.fetchone()[0] > 0
    # Nothing half-published is left behind in staging by these runs.
    staging = home / "domains" / ref.split("/")[0] / "staging" / ref.split("/")[1]
    left = [p.name for p in staging.glob("*") if p.name.split("-")[0] in runs]
    assert not left, left
    for run_id in runs:
        assert LOCK_ERROR not in _log_text(instance, run_id), run_id


def test_a_product_page_materializes_it_with_its_upstream_across_domains(ui, browser, mesh_home):
    """customers/customer_360's page links to the `mesh` launchpad with the
    product and `with_upstream: true` filled in; Launch Run materializes it
    with every upstream product in 4 domains, one run per domain."""
    products = _products(mesh_home)
    before = {ref: _current(mesh_home, ref) for ref in products}
    with DagsterInstance.get() as instance:
        before_at = {
            ref: instance.get_latest_materialization_event(AssetKey(ref.split("/"))).timestamp
            for ref in products
        }
    page = _open(browser, f"{ui}/assets/customers/customer_360", "customer_360-overview")
    # The definition's metadata: dagmesh/materialize_with_upstream, a link.
    action = page.get_by_role("link", name="Materialize with upstream across domains")
    action.scroll_into_view_if_needed(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "customer_360-materialize-action.png"))
    action.click()
    launchpad = page
    launchpad.wait_for_url("**/jobs/materialize_products/playground", timeout=60_000)
    launchpad.get_by_text("customers/customer_360").first.wait_for(timeout=60_000)
    launchpad.wait_for_timeout(1000)
    launchpad.screenshot(path=str(ARTIFACTS / "customer_360-launchpad.png"), full_page=True)
    assert "with_upstream: true" in launchpad.inner_text("body")
    launchpad.get_by_role("button", name="Launch Run").click()
    launchpad.wait_for_url("**/runs/**", timeout=60_000)
    materialization = launchpad.url.rstrip("/").split("/runs/")[1].split("?")[0]
    # Not watched while it runs: the live run page costs the webserver and
    # chromium the CPU the runs need.
    launchpad.goto("about:blank")

    with DagsterInstance.get() as instance:
        run = _finished(instance, materialization)
        assert run.status == DagsterRunStatus.SUCCESS, run.status
        selected = json.loads(run.tags["dagmesh/selected"])
        runs = _domain_runs(instance, materialization)
        published = {}
        for child in runs:
            published.update(_published(instance, child.run_id))
        after_at = {
            ref: instance.get_latest_materialization_event(AssetKey(ref.split("/"))).timestamp
            for ref in selected
        }
    assert {
        "customers/customer_360",
        "customers/customer_profiles",
        "sales/orders",
        "sales/order_items",
        "shipping/shipping_delays",
        "shipping/open_order_delay_risk",
        "marketing/lead_attribution",
    } <= set(selected), selected
    domains = {ref.split("/")[0] for ref in selected}
    assert domains == {"sales", "shipping", "marketing", "customers"}
    assert sorted(r.tags["dagster/code_location"] for r in runs) == sorted(domains)
    assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
    # Every selected product has a newer materialization and a new published version.
    assert set(published) >= set(selected), sorted(set(selected) - set(published))
    for ref in selected:
        assert after_at[ref] > before_at[ref], ref
        assert published[ref][0] != before[ref], ref
        assert (_port(mesh_home, ref) / "versions" / published[ref][0] / "data.parquet").is_file()

    # The record of the materialization: its run page lists each domain's run.
    launchpad.set_viewport_size({"width": 1600, "height": 2400})
    launchpad.goto(f"{ui}/runs/{materialization}", wait_until="networkidle")
    launchpad.get_by_text(f"launched run {runs[0].run_id}").first.wait_for(timeout=60_000)
    launchpad.wait_for_timeout(1500)
    launchpad.screenshot(
        path=str(ARTIFACTS / "customer_360-cross-domain-materialization.png"), full_page=True
    )
    text = launchpad.inner_text("body")
    assert "materialize_products" in text
    for child in runs:
        assert f"launched run {child.run_id}" in text, child.tags["dagster/code_location"]
    page.close()


def _ticked_since_updated(instance: DagsterInstance, key: AssetKey) -> bool:
    """Nothing of the domain in progress, and its automation sensor has
    evaluated since the product's last materialization."""
    from dagster._core.scheduler.instigation import InstigatorType

    domain = key.path[0]
    busy = instance.get_run_ids(
        RunsFilter(tags={"dagster/code_location": domain}, statuses=IN_PROGRESS), limit=1
    )
    if busy:
        return False
    (sensor,) = (
        s
        for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        if s.name == f"{domain}_automation"
    )
    ticks = instance.get_ticks(sensor.instigator_origin_id, sensor.selector_id, limit=1)
    updated = instance.get_latest_materialization_event(key).timestamp
    return bool(ticks) and ticks[0].timestamp > updated


def test_automation_a_request_and_the_ui_ask_for_one_product_at_once(ui, mesh_home):
    """finance/delay_costs (dbt: it builds in finance's DuckDB file) asked
    for three times at once: by the finance automation sensor (`dagster
    dev`'s daemon) after a new finance/refunds, by the asset page's
    Materialize, and by a cross-domain materialization. Each request builds
    it once and publishes a complete version; the domain's dbt pool runs the
    three dbt steps one after the other, so none meets a DuckDB lock."""
    ref = "finance/delay_costs"
    key = AssetKey(ref.split("/"))
    with DagsterInstance.get() as instance:
        # Dagster's eager() takes a product updated in the same tick window
        # as its input as handled: start once the sensor has ticked since
        # delay_costs last changed (an automation run of an earlier test).
        _wait_for(lambda: _ticked_since_updated(instance, key), 120, "a quiet finance")
        trigger = _materialize_button(ui, ["finance/refunds"])
        assert _finished(instance, trigger).status == DagsterRunStatus.SUCCESS
        since = instance.get_run_record_by_id(trigger).create_timestamp
        before = _current(mesh_home, ref)

        def automation_run():
            runs = instance.get_run_records(
                RunsFilter(tags={"dagster/sensor_name": "finance_automation"}, created_after=since)
            )
            asked = [r.dagster_run for r in runs if key in (r.dagster_run.asset_selection or ())]
            return asked[0].run_id if asked else None

        # The sensor ticks every 30 s; as soon as it asks, the UI and a request ask too.
        automated = _wait_for(automation_run, 240, "the finance automation", poll=0.1)
        clicked = _materialize_button(ui, [ref])
        materialization = _request(ui, [ref], with_upstream=False)
        assert _finished(instance, materialization).status == DagsterRunStatus.SUCCESS
        (requested,) = (r.run_id for r in _domain_runs(instance, materialization))
        runs = [automated, clicked, requested]
        for run_id in runs:
            assert _finished(instance, run_id).status == DagsterRunStatus.SUCCESS, run_id
        _assert_built_once_per_request(instance, mesh_home, ref, before, runs)
        assert LOCK_ERROR not in _log_text(instance, materialization)
        # At once: each run was in progress while another was; the pool kept
        # their dbt steps apart.
        spans = {run_id: _span(instance, run_id) for run_id in runs}
        for run_id, (start, end) in spans.items():
            others = [s for r, s in spans.items() if r != run_id]
            assert any(start < o_end and o_start < end for o_start, o_end in others), spans
        steps = sorted(step for run_id in runs for step in _step_spans(instance, run_id))
        assert len(steps) == 3, steps
        assert all(a[1] <= b[0] for a, b in zip(steps, steps[1:], strict=False)), steps
