"""The Dagster UI in a real browser: `dagster dev` (webserver and daemon)
serves the materialized sample mesh on 127.0.0.1, and Debian's chromium,
driven headless by Playwright, checks what an operator sees. Screenshots go
to test-artifacts/ui/ (or $DAGMESH_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from tests.conftest import REPO

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
