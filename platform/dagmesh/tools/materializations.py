"""The client side of cross-domain materializations: submit one (a run of
``mesh/materialize_products``, see :mod:`dagmesh.orchestration.mesh_location`), follow it
in the instance, cancel it. ``dagmesh materialize`` is built on these; the
UI's launchpad launches the same job.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

# Private, no public equivalent: loading a workspace file in-process to answer
# GraphQL is what dagster-graphql's own CLI does with these.
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster_graphql.cli import execute_query

from dagmesh import config
from dagmesh.config import quiet_tools
from dagmesh.engine.workspace import mesh_workspace_file
from dagmesh.orchestration.instance import ensure_dagster_home
from dagmesh.orchestration.mesh_location import JOB_NAME, OP_NAME, SELECTED_TAG
from dagmesh.orchestration.runner import (
    LAUNCH_RUN,
    MATERIALIZATION_TAG,
    QUIET_RUN_CONFIG,
    Failure,
    MaterializeError,
    Outcome,
    cancel_runs,
    launched_run_id,
    load_errors,
    product_ref,
    require_queue_daemon,
)

POLL_SECONDS = 0.5
REQUEST_TAG = "dagmesh/request"


def request_config(refs: list[str], with_upstream: bool, all_products: bool) -> dict:
    """The run config of ``materialize_products`` for a request (what the
    launchpad takes too)."""
    request = {"products": refs, "with_upstream": with_upstream, "all_products": all_products}
    return {**QUIET_RUN_CONFIG, "ops": {OP_NAME: {"config": request}}}


def submit(refs: Iterable[str], with_upstream: bool = False, all_products: bool = False) -> str:
    """Submit a cross-domain materialization through the instance's run
    coordinator and return its id (the id of its run). It goes on whatever
    happens to this process: the run is the instance's, not ours."""
    quiet_tools()
    ensure_dagster_home()
    refs = [r.strip() for r in refs]
    asked = "all products" if all_products else ", ".join(refs)
    params = {
        "selector": {
            "repositoryLocationName": config.MESH_LOCATION,
            "repositoryName": "__repository__",
            "jobName": JOB_NAME,
        },
        "runConfigData": request_config(refs, with_upstream, all_products),
        "executionMetadata": {
            "tags": [
                {"key": REQUEST_TAG, "value": asked + (" with upstream" if with_upstream else "")}
            ]
        },
    }
    with DagsterInstance.get() as instance:
        require_queue_daemon(instance)
        target = WorkspaceFileTarget(paths=[str(mesh_workspace_file())])
        with WorkspaceProcessContext(instance, target) as context:
            if broken := load_errors(context):
                raise MaterializeError(
                    f"the platform's code location {config.MESH_LOCATION} failed to load: "
                    f"{broken.get(config.MESH_LOCATION)}"
                )
            result = execute_query(context, LAUNCH_RUN, {"params": params})
    return launched_run_id(result, "submitting")


@dataclass
class Snapshot:
    """Where a materialization stands."""

    run: DagsterRun
    selected: list[str] | None
    runs: list[DagsterRun] = field(default_factory=list)
    materialized: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)


def snapshot(instance: DagsterInstance, materialization_id: str) -> Snapshot:
    """The materialization's run, its domains' runs and their products."""
    run = instance.get_run_by_id(materialization_id)
    if run is None or run.job_name != JOB_NAME:
        raise MaterializeError(f"no cross-domain materialization {materialization_id!r}")
    selected = json.loads(run.tags[SELECTED_TAG]) if SELECTED_TAG in run.tags else None
    state = Snapshot(run, selected)
    state.runs = list(instance.get_runs(RunsFilter(tags={MATERIALIZATION_TAG: run.run_id})))
    for child in state.runs:
        records = instance.get_records_for_run(
            child.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
        ).records
        done = {product_ref(r.event_log_entry.dagster_event.asset_key) for r in records}
        state.materialized |= done
        if child.is_finished and child.status != DagsterRunStatus.SUCCESS:
            state.failed |= {product_ref(k) for k in child.asset_selection or ()} - done
    return state


def follow(
    materialization_id: str,
    on_progress: Callable[[Snapshot], None] | None = None,
    timeout: float | None = None,
) -> Outcome:
    """Follow a materialization until its run ends; return its Outcome
    (raises MaterializeError when it was refused: unknown product, broken
    domain, bad request)."""
    deadline = time.monotonic() + timeout if timeout else None
    ensure_dagster_home()  # submitted from a helper process: not set in ours
    with DagsterInstance.get() as instance:
        while True:
            state = snapshot(instance, materialization_id)
            if on_progress:
                on_progress(state)
            if state.run.is_finished:
                return outcome_of(instance, state)
            if state.run.status == DagsterRunStatus.QUEUED:
                require_queue_daemon(instance)
            if deadline and time.monotonic() > deadline:
                raise MaterializeError(f"materialization {materialization_id} timed out")
            time.sleep(POLL_SECONDS)


def outcome_of(instance: DagsterInstance, state: Snapshot) -> Outcome:
    """The Outcome of a finished materialization, as its run recorded it."""
    run = state.run
    reported = _reported(instance, run.run_id)
    outcome = Outcome(run.run_id, state.selected or [])
    outcome.run_ids = [r.run_id for r in state.runs]
    outcome.materialized = sorted(state.materialized)
    if run.status == DagsterRunStatus.CANCELED:
        outcome.cancelled = [r.run_id for r in state.runs if r.status.value.startswith("CANCEL")]
        return outcome
    if reported is None:
        if run.status == DagsterRunStatus.SUCCESS:
            return outcome
        raise MaterializeError(_run_error(instance, run.run_id))
    if "error" in reported:
        raise MaterializeError(reported["error"])
    outcome.selected = reported["selected"]
    outcome.failures = [Failure(**f) for f in reported["failures"]]
    outcome.not_run = reported["not_run"]
    outcome.load_errors = reported["load_errors"]
    outcome.cancelled = reported["cancelled"]
    return outcome


def _reported(instance: DagsterInstance, run_id: str) -> dict | None:
    """What the materialization's op reported: its outcome, or the request
    error it refused with."""
    kinds = {DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_OUTPUT}
    for record in instance.get_records_for_run(run_id, of_type=kinds).records:
        event = record.event_log_entry.dagster_event
        if event.is_step_failure:
            failure = event.step_failure_data.user_failure_data
            metadata = failure.metadata if failure else {}
            if "error" in metadata:
                return {"error": failure.description}
        else:
            metadata = event.event_specific_data.metadata
        if "outcome" in metadata:
            return metadata["outcome"].data
    return None


def _run_error(instance: DagsterInstance, run_id: str) -> str:
    """Why a run failed before its op reported anything (the last error event)."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records
    for record in records:
        return record.event_log_entry.dagster_event.message or "the run failed"
    return f"the materialization's run {run_id} failed; its logs are in the Dagster UI"


def cancel(materialization_id: str) -> list[str]:
    """Cancel a materialization: its run is terminated (which cancels the
    runs it launched) and, so that nothing waits on an unreachable process,
    every one of its runs still in progress is cancelled too. Returns the
    runs cancelled."""
    quiet_tools()
    ensure_dagster_home()
    with DagsterInstance.get() as instance:
        state = snapshot(instance, materialization_id)
        if state.run.is_finished:
            return []
        # The materialization first, so that it launches nothing more.
        cancelled = cancel_runs(instance, [state.run.run_id])
        state = snapshot(instance, materialization_id)
        return cancelled + cancel_runs(instance, [r.run_id for r in state.runs])


def submit_detached(
    refs: Iterable[str], with_upstream: bool = False, all_products: bool = False
) -> str:
    """:func:`submit` from a helper process in a session of its own: the code
    server that launches the materialization's run (embedded profile) is its
    child, so a Ctrl-C in the terminal (SIGINT to the terminal's process
    group) or the end of this process never reaches the run."""
    request = {"refs": list(refs), "with_upstream": with_upstream, "all_products": all_products}
    with tempfile.TemporaryDirectory(prefix="dagmesh-submit-") as folder:
        answer = Path(folder) / "answer.json"
        command = [sys.executable, "-m", "dagmesh.tools.materializations", json.dumps(request)]
        helper = subprocess.run([*command, str(answer)], start_new_session=True, check=False)
        if not answer.is_file():
            raise MaterializeError(f"submitting failed (helper exit code {helper.returncode})")
        result = json.loads(answer.read_text())
    if "error" in result:
        raise MaterializeError(result["error"])
    return result["run_id"]


def _main(request: str, answer: str) -> None:
    """The helper of :func:`submit_detached`: submit, write the answer."""
    from dagmesh.engine.atomic import write_atomically

    asked = json.loads(request)
    try:
        result = {"run_id": submit(asked["refs"], asked["with_upstream"], asked["all_products"])}
    except (MaterializeError, config.SettingError) as error:
        result = {"error": str(error)}
    write_atomically(Path(answer), json.dumps(result))


if __name__ == "__main__":
    _main(*sys.argv[1:3])
