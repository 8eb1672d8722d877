"""Runs whose worker process died: marked failed, their pool slots freed.

A run worker killed with SIGKILL (or by the OOM killer, or a lost machine)
writes no failure event: Dagster keeps the run STARTED and, with op-level
concurrency pools, keeps the pool slot its step claimed. Every later run of
that pool then waits forever (``dagmesh-dbt-<domain>`` has one slot).
Dagster's run monitoring detects dead workers only for launchers with a
health check, which the embedded ``DefaultRunLauncher`` lacks, and only
while the daemon runs; ``dagmesh materialize`` runs without one.

So the platform checks the processes itself: the run worker records
"Started process for run (pid: N)" in the run's event log; a run still in
progress whose worker is gone (no such process, a zombie, or a process
started after that event, i.e. a reused pid) is dead. :func:`sweep_dead_runs`
marks it failed (``DagsterInstance.report_run_failed``), frees its slots
(``event_log_storage.free_concurrency_slots_for_run``, which hands them to
the waiting steps) and tells each run that waited for those pools why.
It only judges local run workers (the default launcher, a code server on
this machine): other launchers have Dagster's own run monitoring.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

# Private, no public equivalent: only the embedded launcher leaves a worker
# whose death no monitor sees, and its runs carry their code server in this tag.
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.storage.tags import GRPC_INFO_TAG

from dagmesh.engine.storage import pid_alive

logger = logging.getLogger("dagmesh.orchestration.dead_runs")

IN_PROGRESS = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
WORKER_STARTED = "Started process for run (pid: "
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})
# /proc's boot time has one-second resolution: a process is "started after
# the event" (a reused pid) only beyond this margin.
START_MARGIN_SECONDS = 2.0
SWEEP_INTERVAL_SECONDS = 30


@dataclass(frozen=True)
class DeadRun:
    """A run whose worker died, what it held and who waited for it."""

    run_id: str
    job: str
    location: str | None
    pid: int
    pools: tuple[str, ...] = ()
    waiting: tuple[str, ...] = field(default=())
    marked_failed: bool = True

    @property
    def message(self) -> str:
        """One line for the terminal and the logs."""
        where = f" ({self.location})" if self.location else ""
        done = ["marked it failed"] if self.marked_failed else []
        if self.pools:
            done.append(f"freed its slot in pool(s) {', '.join(self.pools)}")
        state = "was left in progress" if self.marked_failed else "had ended holding slots"
        text = (
            f"run {self.run_id}{where} {state} by a dead worker (pid {self.pid}, killed or "
            f"crashed): {' and '.join(done)}"
        )
        return text + (f"; run(s) {', '.join(self.waiting)} waited for it" if self.waiting else "")


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def _linux_process(pid: int) -> tuple[bool, float | None] | None:
    """(alive, start time) from /proc, or None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False, None
    except OSError:
        return None
    # The command name may hold spaces and ")": fields follow the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # a zombie is dead; its parent just has not reaped it
        return False, None
    boot = _boot_time()
    ticks = int(fields[19])  # field 22 of proc(5): start time in clock ticks after boot
    return True, (boot + ticks / os.sysconf("SC_CLK_TCK")) if boot is not None else None


def worker_alive(pid: int, started_at: float) -> bool:
    """Whether the run worker ``pid``, which reported its start at
    ``started_at`` (epoch seconds), still runs: the pid exists, is no zombie,
    and is not a newer process that reuses the number."""
    linux = _linux_process(pid)
    if linux is None:
        return pid_alive(pid)
    alive, start = linux
    if not alive:
        return False
    return start is None or start <= started_at + START_MARGIN_SECONDS


def run_worker(instance: DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid of ``run_id``'s worker and when it started, from the worker's
    own "Started process for run" event (the last one: a resumed run has
    several); None before the worker has started."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    for record in reversed(records):
        event = record.event_log_entry.dagster_event
        if event is None or not (event.message or "").startswith(WORKER_STARTED):
            continue
        pid = event.event_specific_data.metadata.get("pid")  # type: ignore[union-attr]
        if pid is not None and str(pid.value).isdigit():
            return int(pid.value), record.event_log_entry.timestamp
    return None


def _local(instance: DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether the run's worker runs on this machine, where its pid means something."""
    if not isinstance(instance.run_launcher, DefaultRunLauncher):
        return False
    info = run.tags.get(GRPC_INFO_TAG)
    if not info:
        return True
    import json

    grpc = json.loads(info)
    return bool(grpc.get("socket")) or grpc.get("host", "localhost") in LOCAL_HOSTS


def _location(run: dg.DagsterRun) -> str | None:
    origin = run.remote_job_origin
    return origin.location_name if origin is not None else None


def _held_pools(instance: DagsterInstance, run_id: str) -> dict[str, set[str]]:
    """Every pool ``run_id`` holds a slot of → the runs waiting for that pool."""
    storage = instance.event_log_storage
    infos = storage.get_concurrency_infos(sorted(storage.get_concurrency_keys()))
    return {
        pool: {s.run_id for s in info.pending_steps if s.run_id != run_id}
        for pool, info in infos.items()
        if any(slot.run_id == run_id for slot in info.claimed_slots)
    }


def _reap(instance: DagsterInstance, run: dg.DagsterRun, pid: int) -> DeadRun:
    """Fail ``run`` if it is still in progress, free its slots, tell its waiters."""
    held = _held_pools(instance, run.run_id)
    dead = DeadRun(
        run.run_id,
        run.job_name,
        _location(run),
        pid,
        tuple(sorted(held)),
        tuple(sorted(set().union(*held.values()))),
        marked_failed=not run.is_finished,
    )
    freed = f" and freed its pool slot(s): {', '.join(dead.pools)}" if dead.pools else ""
    if dead.marked_failed:
        instance.report_run_failed(
            run,
            message=f"The run worker (pid {pid}) died without reporting an end (killed or "
            f"crashed); dagmesh marked the run failed{freed}",
        )
    elif dead.pools:
        instance.report_engine_event(
            f"The run worker (pid {pid}) died holding pool slot(s); dagmesh{freed[4:]}", run
        )
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    for pool, waiting in held.items():
        for waiter_id in sorted(waiting):
            waiter = instance.get_run_by_id(waiter_id)
            if waiter is not None and not waiter.is_finished:
                instance.report_engine_event(
                    f"Waited for pool {pool}: its slot was held by run {run.run_id}, whose "
                    f"worker (pid {pid}) died; dagmesh marked that run failed and freed the "
                    "slot, so this run proceeds.",
                    waiter,
                )
    logger.warning("%s", dead.message)
    return dead


def sweep_dead_runs(
    instance: DagsterInstance, locations: Collection[str] | None = None
) -> list[DeadRun]:
    """Mark every in-progress run whose local worker process is dead as
    failed, and free the pool slots of such runs, ended or not (a run the
    code server marked failed when its worker died still holds them);
    ``locations`` limits it to those code locations' runs. Returns what it
    found (empty when all is well)."""
    storage = instance.event_log_storage
    in_progress = {r.run_id: r for r in instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS))}
    holding = (
        storage.get_concurrency_run_ids() if storage.supports_global_concurrency_limits else set()
    )
    found = []
    for run_id in sorted(in_progress.keys() | holding):
        run = in_progress.get(run_id) or instance.get_run_by_id(run_id)
        if run is None or (locations is not None and _location(run) not in locations):
            continue
        if run.is_finished and not _held_pools(instance, run_id):
            continue  # a finished run only waiting in the queue is Dagster's to clean up
        worker = run_worker(instance, run_id)
        if worker is None or not _local(instance, run) or worker_alive(*worker):
            continue
        # Read the status again now that the worker is known dead: it may
        # have ended the run just before it exited.
        latest = instance.get_run_by_id(run_id)
        if latest is not None:
            found.append(_reap(instance, latest, worker[0]))
    return found


def dead_run_sensor(domain: str) -> dg.SensorDefinition:
    """A sensor (``{domain}_dead_runs``, on by default) that sweeps the
    domain's dead runs while the daemon runs (``dagster dev``, a deployment)."""

    @dg.sensor(
        name=f"{domain}_dead_runs",
        description=f"Marks runs of {domain} whose worker process died as failed and frees "
        "the pool slots they held, so later runs do not wait forever.",
        minimum_interval_seconds=SWEEP_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _sweep(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        dead = sweep_dead_runs(context.instance, {domain})
        for run in dead:
            context.log.warning(run.message)
        return dg.SkipReason("; ".join(r.message for r in dead) or "no dead runs")

    return _sweep
