"""Materializing products across code locations, in dependency order.

Dagster runs one code location per run. dagmesh reads the workspace's asset
graph and launches each domain's selected products as one run, through
Dagster's GraphQL API (``launchRun``), once everything they need from other
domains has materialized; it follows the runs in the instance, so each run
shows in the UI's runs list, tagged ``dagmesh/materialization``.

Why not one asset backfill: in Dagster 1.13 an asset backfill puts all
unpartitioned assets that are ready at once into a single run request and
submits it to the code location of its first asset
(``build_run_requests_with_backfill_policies`` and ``submit_asset_run``), so
a wave spanning several domains fails with "no AssetsDefinition objects
supply these keys".
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

# No public API loads a workspace.yaml and answers GraphQL in-process: these
# are what `dagster-graphql`'s own CLI uses for the same job.
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.controller import get_daemon_statuses
from dagster_graphql.cli import execute_query

from dagmesh import config
from dagmesh.config import quiet_tools
from dagmesh.engine.privacy import safe_error_text
from dagmesh.engine.registry import Registry
from dagmesh.engine.workspace import workspace_locations, workspace_subset
from dagmesh.errors import DagmeshError
from dagmesh.orchestration.code_servers import loaded_workspace
from dagmesh.orchestration.dead_runs import DeadRun, sweep_dead_runs
from dagmesh.orchestration.instance import QUEUE_DAEMON, ensure_dagster_home

POLL_SECONDS = 0.25
# How often a materialization looks for runs left STARTED by a dead worker
# (each look is one query per run in progress).
SWEEP_SECONDS = 2.0
MATERIALIZATION_TAG = "dagmesh/materialization"
DOMAIN_TAG = "dagmesh/domain"
# A queue daemon whose last heartbeat is older than this (plus Dagster's 30 s
# heartbeat interval) is taken as not running.
DAEMON_TOLERANCE_SECONDS = 60

LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

# The run's events go to the instance (and the UI) either way; this only
# keeps run workers from echoing every event to the terminal.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class MaterializeError(DagmeshError, RuntimeError):
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

    materialization_id: str
    selected: list[str]
    materialized: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    load_errors: dict[str, str] = field(default_factory=dict)
    dead_runs: list[DeadRun] = field(default_factory=list)
    # Set when the materialization was cancelled: the runs it cancelled.
    cancelled: list[str] | None = None

    @property
    def success(self) -> bool:
        """Every selected product was materialized and every domain loaded."""
        return (
            self.cancelled is None
            and not self.failures
            and not self.not_run
            and not self.load_errors
            and set(self.materialized) >= set(self.selected)
        )


def product_ref(key: AssetKey) -> str:
    """``domain/product`` for an asset key."""
    return "/".join(key.path)


def _key(ref: str) -> AssetKey:
    return AssetKey(ref.strip("/").split("/"))


@contextmanager
def workspace_context(instance: DagsterInstance, only: Collection[str] | None = None):
    """The workspace runs load (workspace.yaml, or the profile's, e.g. one
    gRPC code server per domain); ``only`` limits it to those code locations."""
    workspace = config.run_workspace_file()
    with tempfile.TemporaryDirectory(prefix="dagmesh-workspace-") as folder:
        if only is not None:
            workspace = workspace_subset(Path(folder), only)
        with loaded_workspace(instance, WorkspaceFileTarget(paths=[str(workspace)])) as context:
            yield context


def locations_needed(refs: list[str], with_upstream: bool) -> set[str] | None:
    """The code locations a selection needs, or None for all of them, so the
    other code servers are not started: named products need their own
    domains and, with their upstream, the domains of every product they read
    transitively, as the mesh registry knows them (None when it cannot tell)."""
    if not refs:
        return None
    known = workspace_locations()
    domains = {ref.strip("/").split("/")[0] for ref in refs}
    if unknown := domains - set(known):
        raise MaterializeError(
            f"no domain {sorted(unknown)[0]!r} in the workspace; domains: {sorted(known)}"
        )
    if not with_upstream:
        return domains
    upstream = Registry(config.registry_dir()).upstream_domains(r.strip("/") for r in refs)
    return None if upstream is None else (upstream & set(known)) | domains


@contextmanager
def _planned(instance: DagsterInstance, refs: list[str], with_upstream: bool):
    """The workspace a request needs, loaded, with its plan (see :func:`_plan`):
    only the code locations :func:`locations_needed` names, or all of them
    when that proves too few (a product reads a domain its registration does
    not list yet: its upstream would be cut short)."""
    only = locations_needed(refs, with_upstream)
    if only is not None:
        with workspace_context(instance, only) as context:
            plan = _plan(context, refs, with_upstream)
            if not with_upstream or not _cut_short(context, plan[0], only):
                yield context, *plan
                return
    with workspace_context(instance) as context:
        yield context, *_plan(context, refs, with_upstream)


def _cut_short(context: WorkspaceProcessContext, keys: list[AssetKey], loaded: set[str]) -> bool:
    """True when a selected product reads one of a workspace location that
    is not loaded (its upstream would end there)."""
    graph = context.create_request_context().asset_graph
    others = set(workspace_locations()) - loaded
    return any(p.path[0] in others for k in keys for p in graph.get(k).parent_keys)


def load_errors(context: WorkspaceProcessContext) -> dict[str, str]:
    """Code locations that failed to load, with the error's own message."""
    request = context.create_request_context()
    errors = {}
    for name, entry in request.get_code_location_entries().items():
        if entry.load_error:
            error = entry.load_error
            while error.cause is not None:
                error = error.cause
            errors[name] = error.message.strip()
    return errors


def select(
    context: WorkspaceProcessContext, refs: Iterable[str], with_upstream: bool
) -> list[AssetKey]:
    """Resolve product names to asset keys (plus upstream across domains).

    Products of code locations that failed to load cannot be selected; with
    no names, every product of the locations that did load is.
    """
    request = context.create_request_context()
    broken = load_errors(context)
    graph = request.asset_graph
    materializable = {k for k in graph.materializable_asset_keys}
    refs = list(refs)
    if not refs:
        return sorted(materializable, key=lambda k: k.path)
    wanted: set[AssetKey] = set()
    for ref in refs:
        key = _key(ref)
        if key not in materializable:
            if key.path[0] in broken:
                raise MaterializeError(
                    f"{ref}: code location {key.path[0]} failed to load:\n{broken[key.path[0]]}"
                )
            known = ", ".join(sorted(product_ref(k) for k in materializable))
            raise MaterializeError(f"no product {ref!r} in the mesh; products: {known}")
        wanted.add(key)
        if with_upstream:
            ancestors = {k for k in graph.get_ancestor_asset_keys(key)}
            wanted |= ancestors & materializable
    return sorted(wanted, key=lambda k: k.path)


def launch_run(context: WorkspaceProcessContext, keys: list[AssetKey], tags: dict[str, str]) -> str:
    """Launch one run of ``keys`` (all in one code location); return its id."""
    graph = context.create_request_context().asset_graph
    handle = graph.get_repository_handle(keys[0])
    checks = graph.get_check_keys_for_assets(set(keys))
    params = {
        "selector": {
            "repositoryLocationName": handle.location_name,
            "repositoryName": handle.repository_name,
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": k.path} for k in keys],
            "assetCheckSelection": [
                {"assetKey": {"path": c.asset_key.path}, "name": c.name} for c in checks
            ],
        },
        "runConfigData": QUIET_RUN_CONFIG,
        "executionMetadata": {
            "tags": [
                {"key": k, "value": v}
                for k, v in {**tags, DOMAIN_TAG: handle.location_name}.items()
            ]
        },
    }
    result = execute_query(context, LAUNCH_RUN, {"params": params})
    return launched_run_id(result, f"launching a run of {handle.location_name}")


def launched_run_id(result: dict, what: str) -> str:
    """The run id in an answer to :data:`LAUNCH_RUN`, or a MaterializeError
    saying that ``what`` failed and why (a GraphQL error, an invalid config,
    a Python error while launching)."""
    if result.get("errors"):
        raise MaterializeError(f"{what} failed: {result['errors'][0]['message']}")
    launched = result["data"]["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        detail = launched.get("message") or launched.get("errors")
        raise MaterializeError(f"{what} failed: {detail}")
    return launched["run"]["runId"]


def _materialized_in(instance: DagsterInstance, run_id: str) -> set[AssetKey]:
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return {r.event_log_entry.dagster_event.asset_key for r in records}


def _error_message(error) -> str:
    """A step failure's own message, not Dagster's "Error occurred while
    executing op" wrapper around it."""
    if error is None:
        return "step failed"
    while error.cause is not None and error.message.startswith(
        "dagster._core.errors.DagsterExecutionStepExecutionError"
    ):
        error = error.cause
    return safe_error_text(error.cls_name, error.message)


def _failures(
    instance: DagsterInstance, run, group: set[AssetKey], step_of: dict[AssetKey, str]
) -> list[Failure]:
    """One Failure per failed step of ``run``, naming the products of that
    step it left unpublished (a dbt project is one step for several products)."""
    if run.status != DagsterRunStatus.FAILURE:
        return []
    missing = group - _materialized_in(instance, run.run_id)
    records = instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.STEP_FAILURE
    ).records
    step_failures = [r.event_log_entry for r in records]
    if not step_failures:
        return [Failure("(run)", run.run_id, "the run failed before any step ran")]
    failures = []
    for entry in step_failures:
        event = entry.dagster_event
        products = sorted(product_ref(k) for k in missing if step_of.get(k) == event.step_key)
        failures.append(
            Failure(
                ", ".join(products) or event.step_key,
                run.run_id,
                _error_message(event.step_failure_data.error),
            )
        )
    return failures


def step_keys(graph, keys: Iterable[AssetKey]) -> dict[AssetKey, str]:
    """The step (op) that computes each product."""
    steps = {}
    for key in keys:
        snap = graph.get(key).resolve_to_singular_repo_scoped_node().asset_node_snap
        steps[key] = snap.op_names[0] if snap.op_names else "__".join(key.path)
    return steps


def downstream_counts(parents: dict[AssetKey, set[AssetKey]]) -> dict[AssetKey, int]:
    """How many selected products depend, directly or not, on each product."""
    children: dict[AssetKey, set[AssetKey]] = defaultdict(set)
    for key, its_parents in parents.items():
        for parent in its_parents:
            children[parent].add(key)

    def below(key: AssetKey, seen: set[AssetKey]) -> set[AssetKey]:
        for child in children[key] - seen:
            seen.add(child)
            below(child, seen)
        return seen

    return {key: len(below(key, set())) for key in parents}


def ready_products(
    keys: list[AssetKey],
    parents: dict[AssetKey, set[AssetKey]],
    location: dict[AssetKey, str],
    done: set[AssetKey],
    unavailable: set[AssetKey],
) -> list[AssetKey]:
    """The products to launch now: every pending product of each domain whose
    pending products' inputs from other domains are all done.

    A domain thus runs once, all its selected products in one run (Dagster
    orders the steps), as soon as what it needs from other domains is
    published. Measured at 10M orders, this beat launching every product as
    early as possible: each run costs a worker process (~2–3 s on the
    critical path), and more concurrent DuckDB steps than cores only share
    the same CPU.
    """
    pending = [k for k in keys if k not in done and k not in unavailable]
    waiting = {
        location[k]
        for k in pending
        for parent in parents[k]
        if location[parent] != location[k] and parent not in done
    }
    return [k for k in pending if location[k] not in waiting]


@dataclass
class _Progress:
    """The state of one cross-domain materialization while it runs."""

    keys: list[AssetKey]
    parents: dict[AssetKey, set[AssetKey]]
    location: dict[AssetKey, str]
    done: set[AssetKey] = field(default_factory=set)
    failed: set[AssetKey] = field(default_factory=set)
    running: dict[str, set[AssetKey]] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)

    def ready_groups(self, reach: dict[AssetKey, int]) -> list[list[AssetKey]]:
        """What to launch now, one group of products per domain; the group
        that unblocks the most downstream products first (launches are slow
        and serial)."""
        self.failed |= {
            k for k in self.keys if k not in self.failed and self.parents[k] & self.failed
        }
        busy = set().union(*self.running.values()) if self.running else set()
        ready = ready_products(
            self.keys, self.parents, self.location, self.done, self.failed | busy
        )
        by_location: dict[str, list[AssetKey]] = defaultdict(list)
        for key in ready:
            by_location[self.location[key]].append(key)
        return sorted(by_location.values(), key=lambda g: -max(reach[k] for k in g))

    def collect(self, instance: DagsterInstance, step_of: dict[AssetKey, str]) -> list[Failure]:
        """Take in the runs that finished; return the failures they had."""
        failures = []
        for run_id in list(self.running):
            run = instance.get_run_by_id(run_id)
            if run is None or not run.is_finished:
                continue
            group = self.running.pop(run_id)
            self.finished.add(run_id)
            ok = _materialized_in(instance, run_id) & group
            self.done |= ok
            if run.status != DagsterRunStatus.SUCCESS or ok != group:
                self.failed |= group - ok
                failures += _failures(instance, run, group, step_of)
        return failures

    def report(self, on_progress: Callable[[list[str], list[str], int], None] | None) -> None:
        """Tell ``on_progress`` what is done and what failed so far."""
        if on_progress:
            on_progress(
                sorted(product_ref(k) for k in self.done),
                sorted(product_ref(k) for k in self.failed),
                len(self.keys),
            )


def materialize(
    refs: Iterable[str] = (),
    with_upstream: bool = False,
    on_progress: Callable[[list[str], list[str], int], None] | None = None,
    timeout: float | None = None,
    max_runs: int | None = None,
    on_notice: Callable[[str], None] | None = None,
    *,
    materialization_id: str | None = None,
    on_launch: Callable[[str, str, list[str]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_selected: Callable[[list[str]], None] | None = None,
) -> Outcome:
    """Materialize products (all when ``refs`` is empty) across the domains'
    code locations: one run per domain, once what it needs from other domains
    is done, at most ``max_runs`` at once (default ``DAGMESH_MAX_RUNS`` or the
    cores: each step's DuckDB already uses every core). Every run is tagged
    ``dagmesh/materialization=<materialization_id>`` (default: a new id).
    Before launching and every :data:`SWEEP_SECONDS`, runs left STARTED by a
    dead worker are failed and their pool slots freed
    (:func:`~dagmesh.orchestration.dead_runs.sweep_dead_runs`), told to
    ``on_notice`` and kept in ``Outcome.dead_runs``. Hooks: ``on_selected``
    (what the selection resolved to), ``on_launch(run_id, domain, products)``,
    ``on_progress(materialized, failed_or_skipped, total)``; when
    ``should_stop()`` answers True, the runs in progress are cancelled (the
    Outcome says ``cancelled``). MaterializeError: a wrong selection or workspace.
    """
    quiet_tools()
    ensure_dagster_home()
    max_runs = max_runs or config.max_runs()
    logging.getLogger("dagster.code_server").setLevel(logging.WARNING)
    refs = list(refs)
    with (
        DagsterInstance.get() as instance,
        _queue_ready(instance),
        _planned(instance, refs, with_upstream) as (context, keys, progress, step_of),
    ):
        outcome = Outcome(materialization_id or uuid.uuid4().hex[:12], list(map(product_ref, keys)))
        outcome.load_errors = {} if refs else load_errors(context)
        if on_selected:
            on_selected(outcome.selected)
        deadline = time.monotonic() + timeout if timeout else None
        sweeper = _Sweeper(outcome, on_notice, finished=progress.finished)
        reach = downstream_counts(progress.parents)
        while True:
            sweeper.sweep(instance)
            if should_stop and should_stop():
                outcome.cancelled = cancel_runs(instance, list(progress.running))
                break
            _launch_ready(context, progress, outcome, reach, max_runs, on_launch)
            if not progress.running:
                break
            time.sleep(POLL_SECONDS)
            outcome.failures += progress.collect(instance, step_of)
            progress.report(on_progress)
            if deadline and time.monotonic() > deadline:
                raise MaterializeError(f"materialization {outcome.materialization_id} timed out")
        return _finished(outcome, keys, progress.done)


def _plan(
    context: Any, refs: list[str], with_upstream: bool
) -> tuple[list[AssetKey], _Progress, dict[AssetKey, str]]:
    """The selected keys, their progress tracker (parents within the
    selection, location of each) and the step key of each."""
    keys = select(context, refs, with_upstream)
    graph = context.create_request_context().asset_graph
    selected = set(keys)
    progress = _Progress(
        keys,
        parents={k: {p for p in graph.get(k).parent_keys if p in selected} for k in keys},
        location={k: graph.get_repository_handle(k).location_name for k in keys},
    )
    return keys, progress, step_keys(graph, keys)


def _launch_ready(
    context: Any,
    progress: _Progress,
    outcome: Outcome,
    reach: dict[AssetKey, int],
    max_runs: int,
    on_launch: Callable[[str, str, list[str]], None] | None,
) -> None:
    """Launch a run for each domain group whose inputs are done, up to ``max_runs`` at once."""
    tags = {MATERIALIZATION_TAG: outcome.materialization_id}
    for group in progress.ready_groups(reach)[: max(0, max_runs - len(progress.running))]:
        run_id = launch_run(context, group, tags)
        progress.running[run_id] = set(group)
        outcome.run_ids.append(run_id)
        if on_launch:
            on_launch(run_id, progress.location[group[0]], [product_ref(k) for k in group])


def cancel_runs(instance: DagsterInstance, run_ids: Iterable[str]) -> list[str]:
    """Cancel the runs among ``run_ids`` still in progress through the
    instance's run coordinator (a queued run is dequeued and never starts; a
    started one is terminated by its launcher); return those it cancelled.

    A run its launcher cannot reach (its code server is gone) is marked
    CANCELING, which run monitoring turns into CANCELED."""
    cancelled = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            continue
        try:
            reached = instance.run_coordinator.cancel_run(run_id)
        except Exception:  # an unreachable code server: fall back to the record
            reached = False
        if not reached and not instance.get_run_by_id(run_id).is_finished:
            instance.report_run_canceling(instance.get_run_by_id(run_id))
        cancelled.append(run_id)
    return cancelled


@contextmanager
def _queue_ready(instance: DagsterInstance):
    """Check the queue's daemon before the (slower) workspace load."""
    require_queue_daemon(instance)
    yield


def require_queue_daemon(instance: DagsterInstance) -> None:
    """Raise MaterializeError if runs are queued and no daemon dequeues them.

    With the QueuedRunCoordinator a launched run only becomes QUEUED: the
    daemon's QUEUED_RUN_COORDINATOR loop is what starts it, within the
    queue's limits. dagmesh does not start a daemon of its own: an instance
    must have exactly one (the deployment's); a second one would count the
    runs in progress separately and break the per-domain limits.
    """
    if not instance.run_coordinator or QUEUE_DAEMON not in instance.get_required_daemon_types():
        return
    status = get_daemon_statuses(
        instance,
        [QUEUE_DAEMON],
        ignore_errors=True,
        heartbeat_tolerance_seconds=DAEMON_TOLERANCE_SECONDS,
    )[QUEUE_DAEMON]
    if not status.healthy:
        beat = status.last_heartbeat
        seen = (
            f"its last heartbeat was at {time.strftime('%H:%M:%S', time.localtime(beat.timestamp))}"
            if beat
            else "it has never run on this instance"
        )
        raise MaterializeError(
            f"profile {config.profile_name()} queues runs (QueuedRunCoordinator) and no "
            f"dagster-daemon is running to start them ({seen}); start the deployment's "
            "daemon, or `dagmesh daemon` in another terminal, and try again"
        )


@dataclass
class _Sweeper:
    """Sweeps dead runs at most every :data:`SWEEP_SECONDS`."""

    outcome: Outcome
    on_notice: Callable[[str], None] | None
    finished: Collection[str] = ()
    last: float = float("-inf")

    def sweep(self, instance: DagsterInstance) -> None:
        """Reap dead runs if the last look is old enough; report each one."""
        if time.monotonic() - self.last < SWEEP_SECONDS:
            return
        self.last = time.monotonic()
        for dead in sweep_dead_runs(instance):
            self.outcome.dead_runs.append(dead)
            if self.on_notice:
                self.on_notice(dead.message)
        # A run waiting in the queue while the daemon is gone would wait forever.
        waiting = [r for r in self.outcome.run_ids if r not in self.finished]
        if waiting and instance.get_run_ids(
            RunsFilter(run_ids=waiting, statuses=[DagsterRunStatus.QUEUED])
        ):
            require_queue_daemon(instance)


def _finished(outcome: Outcome, keys: list[AssetKey], done: set[AssetKey]) -> Outcome:
    outcome.materialized = sorted(product_ref(k) for k in done)
    failed_refs = {ref for f in outcome.failures for ref in f.product.split(", ")}
    # Everything selected that neither materialized nor failed itself,
    # including products several steps below a failure.
    outcome.not_run = sorted(
        product_ref(k) for k in keys if k not in done and product_ref(k) not in failed_refs
    )
    return outcome
