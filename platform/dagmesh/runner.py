"""Materializing products across code locations with a Dagster asset backfill.

Dagster runs one code location per run; an asset backfill spans locations
and launches each location's runs once their upstream is done. dagmesh
creates the backfill through Dagster's GraphQL API and watches it in the
instance, so every run shows in the UI. When no Dagster daemon is running
(the CLI on its own), dagmesh runs the backfill daemon's iterations itself,
every half second instead of the daemon's 30 s, and stops when the backfill
ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field

from dagster import AssetKey, DagsterInstance
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster_graphql.cli import execute_query

from dagmesh import config
from dagmesh.instance import ensure_dagster_home, quiet_tools

POLL_SECONDS = 0.5
DAEMON_FRESH_SECONDS = 60
TERMINAL = {
    BulkActionStatus.COMPLETED_SUCCESS,
    BulkActionStatus.COMPLETED_FAILED,
    BulkActionStatus.FAILED,
    BulkActionStatus.CANCELED,
}

LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""


class MaterializeError(RuntimeError):
    """The selection could not be materialized."""


@dataclass
class Failure:
    """A product that failed, the run it failed in and why."""

    product: str
    run_id: str
    message: str


@dataclass
class Outcome:
    """What a cross-domain materialization did."""

    backfill_id: str
    selected: list[str]
    materialized: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        """Every selected product was materialized."""
        return not self.failures and not self.not_run and set(self.materialized) >= set(
            self.selected
        )


def product_ref(key: AssetKey) -> str:
    """``domain/product`` for an asset key."""
    return "/".join(key.path)


def _key(ref: str) -> AssetKey:
    return AssetKey(ref.strip("/").split("/"))


@contextmanager
def workspace_context(instance: DagsterInstance):
    """A workspace loaded from workspace.yaml (starts one code server per domain)."""
    target = WorkspaceFileTarget(paths=[str(config.workspace_file())])
    with WorkspaceProcessContext(instance, target) as context:
        yield context


def select(context: WorkspaceProcessContext, refs: Iterable[str], with_upstream: bool) -> list[AssetKey]:
    """Resolve product names to asset keys (plus upstream across domains)."""
    request = context.create_request_context()
    errors = {
        name: entry.load_error
        for name, entry in request.get_code_location_entries().items()
        if entry.load_error
    }
    if errors:
        details = "\n".join(f"  {n}: {e.message.strip().splitlines()[-1]}" for n, e in errors.items())
        raise MaterializeError(f"code locations failed to load:\n{details}")
    graph = request.asset_graph
    materializable = {k for k in graph.materializable_asset_keys}
    refs = list(refs)
    if not refs:
        return sorted(materializable, key=lambda k: k.path)
    wanted: set[AssetKey] = set()
    for ref in refs:
        key = _key(ref)
        if key not in materializable:
            known = ", ".join(sorted(product_ref(k) for k in materializable))
            raise MaterializeError(f"no product {ref!r} in the mesh; products: {known}")
        wanted.add(key)
        if with_upstream:
            wanted |= {k for k in graph.get_ancestor_asset_keys(key) if k in materializable}
    return sorted(wanted, key=lambda k: k.path)


def _launch_backfill(context: WorkspaceProcessContext, keys: list[AssetKey], title: str) -> str:
    params = {
        "assetSelection": [{"path": k.path} for k in keys],
        "allPartitions": True,
        "title": title,
        "tags": [{"key": "dagmesh/command", "value": "materialize"}],
        # The run's events go to the instance (and the UI) either way; this
        # only keeps the run workers from echoing every event to the terminal.
        "runConfigData": {"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    }
    result = execute_query(context, LAUNCH_BACKFILL, {"params": params})
    if result.get("errors"):
        raise MaterializeError(f"launching the backfill failed: {result['errors'][0]['message']}")
    launched = result["data"]["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        raise MaterializeError(f"launching the backfill failed: {launched.get('message')}")
    return launched["backfillId"]


def daemon_running(instance: DagsterInstance) -> bool:
    """True when a Dagster daemon heartbeat is fresh (e.g. under `dagster dev`)."""
    beats = instance.get_daemon_heartbeats()
    beat = beats.get("BACKFILL")
    return beat is not None and time.time() - beat.timestamp < DAEMON_FRESH_SECONDS


def _failures(instance: DagsterInstance, runs, keys: list[AssetKey]) -> list[Failure]:
    by_step = {"__".join(k.path): product_ref(k) for k in keys}
    failures = []
    for run in runs:
        if run.status != DagsterRunStatus.FAILURE:
            continue
        records = instance.get_records_for_run(run.run_id).records
        step_failures = [
            r.event_log_entry
            for r in records
            if r.event_log_entry.dagster_event
            and r.event_log_entry.dagster_event.event_type_value == "STEP_FAILURE"
        ]
        if not step_failures:
            failures.append(Failure("(run)", run.run_id, "the run failed before any step ran"))
        for entry in step_failures:
            event = entry.dagster_event
            error = event.step_failure_data.error
            message = error.message if error else "step failed"
            failures.append(Failure(by_step.get(event.step_key, event.step_key), run.run_id, message))
    return failures


def materialize(
    refs: Iterable[str] = (),
    with_upstream: bool = False,
    on_progress: Callable[[list[str], list[str], int], None] | None = None,
    timeout: float | None = None,
) -> Outcome:
    """Materialize products (all of them when ``refs`` is empty) as one
    Dagster asset backfill across the domains' code locations.

    ``on_progress(materialized, failed_or_skipped, total)`` is called as the
    backfill advances. Returns the :class:`Outcome`; raises MaterializeError
    when the selection or the workspace is wrong.
    """
    quiet_tools()
    ensure_dagster_home()
    logger = logging.getLogger("dagmesh.backfill")
    logger.setLevel(logging.WARNING)
    from dagster._daemon.backfill import execute_backfill_iteration

    with DagsterInstance.get() as instance, workspace_context(instance) as context:
        keys = select(context, refs, with_upstream)
        selected = [product_ref(k) for k in keys]
        title = "dagmesh materialize " + (" ".join(refs) or "--all")
        backfill_id = _launch_backfill(context, keys, title)
        drive = not daemon_running(instance)
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            if drive:
                for _ in execute_backfill_iteration(context, logger):
                    pass
            backfill = instance.get_backfill(backfill_id)
            data = backfill.asset_backfill_data
            done = sorted(product_ref(k) for k in data.materialized_subset.asset_keys)
            failed = sorted(product_ref(k) for k in data.failed_and_downstream_subset.asset_keys)
            if on_progress:
                on_progress(done, failed, len(keys))
            if backfill.status in TERMINAL:
                break
            if deadline and time.monotonic() > deadline:
                raise MaterializeError(f"backfill {backfill_id} did not finish within {timeout} s")
            time.sleep(POLL_SECONDS)
        runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id}))
        outcome = Outcome(backfill_id, selected, done, run_ids=[r.run_id for r in runs])
        outcome.failures = _failures(instance, runs, keys)
        failed_refs = {f.product for f in outcome.failures}
        outcome.not_run = [r for r in selected if r not in done and r not in failed_refs]
        return outcome
