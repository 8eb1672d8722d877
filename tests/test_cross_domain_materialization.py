"""Cross-domain materializations driven by Dagster: a run of the platform's
``mesh/materialize_products`` job launches one run per domain through the
run coordinator, as the UI's launchpad or `dagmesh materialize` asks.

A small project keeps it quick: alpha's calendar (after alpha's private
``pause``, which sleeps while ``slow.flag`` exists so a test can catch a run
in progress) feeds beta's weeks; gamma does not import.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from dagmesh.orchestration.runner import LAUNCH_RUN
from tests.cli import BIN, dagmesh, flat, ok
from tests.environment import environment
from tests.processes import graphql, wait_until_ready
from tests.servers import free_port

PAUSE = """

import time
from pathlib import Path

import pandas as pd


@alpha.python_product(
    description="Waits while slow.flag exists (tests catch a run in progress).",
    classification="internal",
    access="private",
    columns=[Column("waited", "BOOLEAN", "Whether it waited.", nullable=False)],
    primary_key="waited",
)
def pause(ctx) -> pd.DataFrame:
    flag = Path(__file__).resolve().parents[2] / "slow.flag"
    waited = flag.exists()
    deadline = time.monotonic() + 120
    while flag.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return pd.DataFrame({"waited": [waited]})
"""
WEEKS = """

beta.sql_product(
    "weeks",
    description="Days per ISO week of alpha's calendar.",
    consumes={"days": "alpha/calendar"},
    classification="internal",
    access="private",
    columns=[
        Column("iso_week", "INTEGER", "ISO 8601 week number.", nullable=False),
        Column("days", "BIGINT", "Days in the week.", nullable=False),
    ],
    primary_key="iso_week",
    sql="SELECT iso_week, count(*)::BIGINT AS days FROM days GROUP BY iso_week",
)
"""
PRODUCTS = ["alpha/calendar", "alpha/pause", "beta/weeks"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three domains: alpha → beta, and gamma, registered and then broken."""
    root = tmp_path_factory.mktemp("cross") / "project"
    (root / "domains").mkdir(parents=True)
    (root / "domains" / "__init__.py").write_text("")
    (root / "workspace.yaml").write_text("load_from: []\n")
    (root / "pyproject.toml").write_text("")
    env = {
        **os.environ,
        "DAGMESH_PROJECT": str(root),
        "DAGMESH_HOME": str(root / ".dagmesh"),
        "DAGSTER_HOME": str(root / ".dagmesh" / "dagster"),
        "COLUMNS": "300",
    }
    env.pop("DAGMESH_PROFILE", None)
    for name in ("alpha", "beta", "gamma"):
        ok(dagmesh(env, "new", "domain", name))
    _append(root / "domains" / "alpha" / "products.py", PAUSE)
    alpha = root / "domains" / "alpha" / "products.py"
    declared = '    primary_key="day",\n'
    alpha.write_text(alpha.read_text().replace(declared, declared + '    consumes=["pause"],\n', 1))
    _append(root / "domains" / "beta" / "products.py", WEEKS)
    ok(dagmesh(env, "contracts", "sync"))
    ok(dagmesh(env, "register"))
    _append(root / "domains" / "gamma" / "products.py", "\nraise RuntimeError('gamma is broken')\n")
    return {"root": root, "env": env, "home": root / ".dagmesh"}


def _append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


@pytest.fixture
def instance(project: dict, monkeypatch) -> Iterator[DagsterInstance]:
    from dagmesh.orchestration.instance import ensure_dagster_home

    for key in ("DAGMESH_PROJECT", "DAGMESH_HOME", "DAGSTER_HOME"):
        monkeypatch.setenv(key, project["env"][key])
    ensure_dagster_home()
    with DagsterInstance.get() as dagster:
        yield dagster


def _versions(project: dict) -> dict[str, str | None]:
    """Each product's current published version (None: never published)."""
    versions = {}
    for ref in PRODUCTS:
        domain, name = ref.split("/")
        current = project["home"] / "domains" / domain / "ports" / name / "current"
        versions[ref] = current.resolve().name if current.exists() else None
    return versions


def _readable(project: dict, ref: str) -> int:
    domain, name = ref.split("/")
    data = project["home"] / "domains" / domain / "ports" / name / "current" / "data.parquet"
    return duckdb.connect().execute(f"SELECT count(*) FROM '{data}'").fetchone()[0]


def _wait(ready, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := ready():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _submitted(process: subprocess.Popen) -> str:
    """The materialization id `dagmesh materialize` reports once it submitted."""
    for line in process.stderr:
        if line.startswith("submitted materialization "):
            return line.split()[2]
    raise AssertionError(f"dagmesh materialize ended ({process.wait()}) before submitting")


def _domain_runs(instance: DagsterInstance, materialization: str) -> list:
    runs = instance.get_runs(RunsFilter(tags={"dagmesh/materialization": materialization}))
    return sorted(runs, key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp)


@pytest.fixture(scope="module")
def webserver(project: dict) -> Iterator[str]:
    """A real `dagster-webserver` on the domains' workspace and the
    platform's `mesh` location, as `dagmesh dev` serves them."""
    from dagmesh.engine.workspace import mesh_workspace_file
    from dagmesh.orchestration.instance import ensure_dagster_home

    # As `dagmesh dev` does: the embedded instance's dagster.yaml, the mesh location.
    names = ("DAGMESH_PROJECT", "DAGMESH_HOME", "DAGSTER_HOME")
    with environment({k: project["env"][k] for k in names}):
        ensure_dagster_home()
        mesh = mesh_workspace_file()
    port = free_port()
    log = project["root"] / "webserver.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
            + ["-w", str(project["root"] / "workspace.yaml"), "-w", str(mesh)],
            cwd=project["root"],
            env=project["env"],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(lambda: graphql(url, "{ version }"), 120, "the webserver")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def _launch_from_the_launchpad(url: str, products: list[str], with_upstream: bool) -> dict:
    """What the UI's launchpad sends for mesh/materialize_products."""
    config = {"products": products, "with_upstream": with_upstream}
    params = {
        "selector": {
            "repositoryLocationName": "mesh",
            "repositoryName": "__repository__",
            "jobName": "materialize_products",
        },
        "runConfigData": {"ops": {"materialize_across_domains": {"config": config}}},
    }
    return graphql(url, LAUNCH_RUN, {"params": params})["data"]["launchRun"]


def test_the_ui_materializes_a_product_with_its_upstream_across_domains(
    project: dict, webserver: str, instance: DagsterInstance
):
    before = _versions(project)
    launched = _launch_from_the_launchpad(webserver, ["beta/weeks"], with_upstream=True)
    assert launched["__typename"] == "LaunchRunSuccess", launched
    materialization = launched["run"]["runId"]

    run = _wait(
        lambda: (r := instance.get_run_by_id(materialization)) and r.is_finished and r,
        180,
        "the materialization",
    )
    assert run.status == DagsterRunStatus.SUCCESS, run.status
    after = _versions(project)
    for ref in PRODUCTS:
        assert after[ref] is not None and after[ref] != before[ref], (ref, before, after)
    # One run per domain, beta's launched only once alpha's had succeeded.
    runs = _domain_runs(instance, materialization)
    assert [r.tags["dagster/code_location"] for r in runs] == ["alpha", "beta"]
    assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
    alpha, beta = (instance.get_run_record_by_id(r.run_id) for r in runs)
    assert beta.create_timestamp.timestamp() >= alpha.end_time
    # The record of the whole materialization: what it resolved to, its runs.
    assert json.loads(run.tags["dagmesh/selected"]) == PRODUCTS
    assert _readable(project, "beta/weeks") >= 52


def test_the_ui_refuses_unknown_and_broken_products_naming_them(
    webserver: str, instance: DagsterInstance
):
    from dagmesh.orchestration.runner import MaterializeError
    from dagmesh.tools.materializations import Snapshot, outcome_of

    cases = {
        "alpha/nosuch": "no product 'alpha/nosuch' in the mesh",
        "gamma/calendar": "gamma/calendar: code location gamma failed to load",
    }
    for ref, message in cases.items():
        launched = _launch_from_the_launchpad(webserver, [ref], with_upstream=True)
        materialization = launched["run"]["runId"]
        run = _wait(
            lambda m=materialization: (r := instance.get_run_by_id(m)) and r.is_finished and r,
            120,
            ref,
        )
        assert run.status == DagsterRunStatus.FAILURE
        with pytest.raises(MaterializeError) as refused:
            outcome_of(instance, Snapshot(run, None))
        assert message in str(refused.value)
        if ref.startswith("gamma"):
            assert "gamma is broken" in str(refused.value)
        assert not _domain_runs(instance, materialization)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_a_killed_or_interrupted_cli_leaves_the_materialization_running(
    project: dict, instance, sig
):
    before = _versions(project)
    process = subprocess.Popen(
        [str(BIN / "dagmesh"), "materialize", "beta/weeks", "--with-upstream"],
        cwd=project["root"],
        env=project["env"],
        stdin=subprocess.DEVNULL,  # no terminal to ask whether to cancel
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    materialization = _submitted(process)
    process.send_signal(sig)
    process.wait(timeout=60)
    # Through the same buffered pipes _submitted read from (not communicate()).
    stdout, stderr = process.stdout.read(), process.stderr.read()
    if sig == signal.SIGINT:
        # Without a terminal it is left running, and the CLI says how to cancel it.
        assert process.returncode == 130, stdout + stderr
        said = " ".join((stdout + stderr).split())
        assert f"materialization {materialization} goes on without this command" in said
        assert f"dagmesh cancel {materialization}" in said

    run = _wait(
        lambda: (r := instance.get_run_by_id(materialization)) and r.is_finished and r,
        180,
        "the materialization",
    )
    assert run.status == DagsterRunStatus.SUCCESS
    after = _versions(project)
    assert all(after[ref] != before[ref] for ref in PRODUCTS), (before, after)
    assert {r.status for r in _domain_runs(instance, materialization)} == {DagsterRunStatus.SUCCESS}


def test_cancelling_stops_the_runs_and_keeps_the_last_good_versions(project: dict, instance):
    before = _versions(project)
    assert all(before.values()), before
    flag = project["root"] / "slow.flag"
    flag.write_text("")
    try:
        process = subprocess.Popen(
            [str(BIN / "dagmesh"), "materialize", "beta/weeks", "--with-upstream"],
            cwd=project["root"],
            env=project["env"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        materialization = _submitted(process)
        _wait(
            lambda: any(
                r.status == DagsterRunStatus.STARTED
                for r in _domain_runs(instance, materialization)
            ),
            120,
            "alpha's run to start",
        )
        cancelled = ok(dagmesh(project["env"], "cancel", materialization, timeout=120))
        assert f"cancelled materialization {materialization}" in flat(cancelled)
        process.wait(timeout=120)
        stdout, stderr = process.stdout.read(), process.stderr.read()
    finally:
        flag.unlink(missing_ok=True)
    # The CLI that followed it says so and exits non-zero.
    assert process.returncode == 1, stdout + stderr
    assert "cancelled" in stdout + stderr

    run = _wait(
        lambda: (r := instance.get_run_by_id(materialization)) and r.is_finished and r,
        120,
        "the materialization to end",
    )
    assert run.status == DagsterRunStatus.CANCELED
    runs = _wait(
        lambda: (
            (rs := _domain_runs(instance, materialization))
            and all(r.is_finished for r in rs)
            and rs
        ),
        120,
        "its runs to end",
    )
    # alpha's run was cancelled mid-step; beta's never launched.
    assert [(r.tags["dagster/code_location"], r.status) for r in runs] == [
        ("alpha", DagsterRunStatus.CANCELED)
    ]
    time.sleep(2)  # nothing starts later either
    assert len(_domain_runs(instance, materialization)) == 1
    # Every port still serves its last good version.
    assert _versions(project) == before
    assert _readable(project, "beta/weeks") >= 52
    assert _readable(project, "alpha/calendar") >= 365


def test_bad_requests_on_the_command_line_are_named(project: dict):
    unknown = dagmesh(project["env"], "materialize", "alpha/nosuch", "--with-upstream")
    assert unknown.returncode == 2, flat(unknown)
    assert "no product 'alpha/nosuch' in the mesh; products: alpha/calendar" in flat(unknown)
    broken = dagmesh(project["env"], "materialize", "gamma/calendar")
    assert broken.returncode == 2, flat(broken)
    assert "code location gamma failed to load" in flat(broken)
    assert "gamma is broken" in flat(broken)
    taken = dagmesh(project["env"], "new", "domain", "mesh")
    assert taken.returncode != 0
    assert "'mesh' is the platform's own code location" in flat(taken)
    assert not (project["root"] / "domains" / "mesh").exists()
    missing = dagmesh(project["env"], "cancel", "no-such-materialization")
    assert missing.returncode == 2
    assert "no cross-domain materialization 'no-such-materialization'" in flat(missing)


def test_a_queued_instance_without_a_daemon_is_refused_before_submitting(
    project: dict, tmp_path: Path
):
    env = {**project["env"], "DAGSTER_HOME": str(tmp_path / "dagster")}
    (project["root"] / "pyproject.toml").write_text(
        "[tool.dagmesh.profiles.queued]\nmax_concurrent_runs = 2\n"
    )
    try:
        result = dagmesh({**env, "DAGMESH_PROFILE": "queued"}, "materialize", "beta/weeks")
    finally:
        (project["root"] / "pyproject.toml").write_text("")
    assert result.returncode == 2, flat(result)
    assert "no dagster-daemon is running" in flat(result)
    with DagsterInstance.from_config(str(tmp_path / "dagster")) as queued:
        assert not queued.get_runs(), "nothing was submitted"


def test_an_operator_launches_it_from_the_launchpad_in_chromium(
    project: dict, webserver: str, instance: DagsterInstance
):
    """Chromium, as an operator: the mesh location's job, its launchpad, the
    config, Launch Run; the run's page is the record of the materialization."""
    from playwright.sync_api import sync_playwright

    from tests.test_ui import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

    before = _versions(project)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    launchpad = f"{webserver}/locations/__repository__@mesh/jobs/materialize_products/playground"
    config = (
        "ops: {materialize_across_domains: {config: {products: [beta/weeks], with_upstream: true}}}"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.add_locator_handler(
            page.get_by_role("button", name="Skip"), lambda button: button.click()
        )
        page.goto(launchpad, wait_until="networkidle", timeout=120_000)
        editor = page.locator(".CodeMirror").first
        editor.click()
        page.keyboard.press("Control+A")
        page.keyboard.insert_text(config)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "cross-domain-launchpad.png"), full_page=True)
        page.get_by_role("button", name="Launch Run").click()
        page.wait_for_url("**/runs/**", timeout=60_000)
        materialization = page.url.rstrip("/").split("/runs/")[1].split("?")[0]
        run = _wait(
            lambda: (r := instance.get_run_by_id(materialization)) and r.is_finished and r,
            180,
            "the materialization",
        )
        page.reload(wait_until="networkidle")
        page.wait_for_timeout(2000)
        page.screenshot(path=str(ARTIFACTS / "cross-domain-materialization.png"), full_page=True)
        text = page.inner_text("body")
        browser.close()
    assert run.status == DagsterRunStatus.SUCCESS
    assert "materialize_products" in text
    runs = _domain_runs(instance, materialization)
    assert [r.tags["dagster/code_location"] for r in runs] == ["alpha", "beta"]
    # Its log names each domain's run.
    assert all(f"launched run {r.run_id}" in text for r in runs), text[-2000:]
    after = _versions(project)
    assert all(after[ref] != before[ref] for ref in PRODUCTS), (before, after)
