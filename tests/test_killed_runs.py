"""A killed run frees what it held (issue 12, item 4).

Real run workers are SIGKILLed after they claimed their domain's pool slot;
the next run of the domain must proceed and say why it waited. The cheaper
cases build run records in a real Dagster instance with real processes as
their workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster import DagsterEvent, DagsterEventType, DagsterInstance, DagsterRunStatus
from dagster._core.events import EngineEventData
from dagster._core.storage.tags import GRPC_INFO_TAG

from dagmesh.engine.storage import OutputPort
from dagmesh.orchestration.dbt.run import pool_name
from dagmesh.orchestration.dead_runs import run_worker, sweep_dead_runs, worker_alive
from dagmesh.orchestration.runner import launch_run, materialize, workspace_context

FINANCE_POOL = pool_name("finance")
FINANCE_DBT = [
    dg.AssetKey(["finance", "delay_costs"]),
    dg.AssetKey(["finance", "weekly_delay_impact"]),
]


# --------------------------------------------------------------------------- process checks


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def test_a_live_worker_is_alive_and_a_killed_one_is_not():
    process = _sleeper()
    started = time.time()
    try:
        assert worker_alive(process.pid, started)
        os.kill(process.pid, signal.SIGKILL)
        time.sleep(0.2)
        # Not waited for: a zombie, which still answers kill(pid, 0).
        assert not worker_alive(process.pid, started)
    finally:
        process.kill()
        process.wait()
    assert not worker_alive(process.pid, started)  # reaped: no such process


def test_a_reused_pid_is_not_the_worker():
    """A process started well after the worker reported its start is a
    newer process under a recycled pid, not the run's worker."""
    process = _sleeper()
    try:
        assert not worker_alive(process.pid, time.time() - 3600)
    finally:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------- fabricated runs


@dg.asset(pool="lab-pool")
def _lab_asset() -> None:
    """Stands for a product holding a pool slot."""


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        yield instance


def _started_run(instance: DagsterInstance, pid: int, tags: dict[str, str] | None = None):
    """A STARTED run whose worker is ``pid``, as a launched run records it."""
    job = dg.Definitions(assets=[_lab_asset]).resolve_implicit_global_asset_job_def()
    run = instance.create_run_for_job(job_def=job, tags=tags or {})
    instance.report_dagster_event(
        DagsterEvent(DagsterEventType.PIPELINE_START.value, job_name=run.job_name),
        run_id=run.run_id,
    )
    instance.report_engine_event(
        f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid)
    )
    return instance.get_run_by_id(run.run_id)


def _claimed(instance: DagsterInstance, pool: str) -> set[str]:
    return {s.run_id for s in instance.event_log_storage.get_concurrency_info(pool).claimed_slots}


def test_a_dead_worker_fails_its_run_frees_the_slot_and_tells_the_waiting_run(instance):
    process = _sleeper()
    holder = _started_run(instance, process.pid)
    waiter = _started_run(instance, os.getpid())
    storage = instance.event_log_storage
    storage.set_concurrency_slots("lab-pool", 1)
    assert storage.claim_concurrency_slot("lab-pool", holder.run_id, "a").is_claimed
    assert not storage.claim_concurrency_slot("lab-pool", waiter.run_id, "b").is_claimed

    assert sweep_dead_runs(instance) == []  # the holder's worker is alive
    assert _claimed(instance, "lab-pool") == {holder.run_id}

    process.kill()
    process.wait()
    [dead] = sweep_dead_runs(instance)

    assert dead.run_id == holder.run_id and dead.pid == process.pid
    assert dead.pools == ("lab-pool",) and dead.waiting == (waiter.run_id,)
    assert instance.get_run_by_id(holder.run_id).status == DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(waiter.run_id).status == DagsterRunStatus.STARTED
    assert holder.run_id not in _claimed(instance, "lab-pool")
    assert storage.claim_concurrency_slot("lab-pool", waiter.run_id, "b").is_claimed
    failure = instance.get_records_for_run(
        holder.run_id, of_type=DagsterEventType.PIPELINE_FAILURE
    ).records[0]
    assert f"pid {process.pid}" in failure.event_log_entry.message
    assert "lab-pool" in failure.event_log_entry.message
    said = [r.event_log_entry.message for r in instance.get_records_for_run(waiter.run_id).records]
    assert any("Waited for pool lab-pool" in m and holder.run_id in m for m in said if m), said
    assert sweep_dead_runs(instance) == []  # once


def test_a_run_on_another_machine_is_not_judged_by_a_local_pid(instance):
    process = _sleeper()
    process.kill()
    process.wait()
    remote = json.dumps({"host": "10.20.30.40", "port": 4000})
    run = _started_run(instance, process.pid, {GRPC_INFO_TAG: remote})
    assert sweep_dead_runs(instance) == []
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED


def test_a_run_whose_worker_has_not_started_is_left_alone(instance):
    job = dg.Definitions(assets=[_lab_asset]).resolve_implicit_global_asset_job_def()
    run = instance.create_run_for_job(job_def=job)
    instance.report_dagster_event(
        DagsterEvent(DagsterEventType.PIPELINE_STARTING.value, job_name=run.job_name),
        run_id=run.run_id,
    )
    assert run_worker(instance, run.run_id) is None
    assert sweep_dead_runs(instance) == []
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTING


# ------------------------------------------------------------------ real runs, real SIGKILL


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            stack += children
    return found


def _claimant(instance: DagsterInstance, run_ids=None, seconds: float = 240) -> str:
    """The run holding finance's pool slot, once one does (one of ``run_ids``)."""
    deadline = time.monotonic() + seconds
    while True:
        holders = _claimed(instance, FINANCE_POOL) - {None}
        if run_ids is not None:
            holders &= set(run_ids)
            for run_id in run_ids:
                run = instance.get_run_by_id(run_id)
                assert not run.is_finished, f"run ended ({run.status}) before it claimed the pool"
        if holders:
            return holders.pop()
        assert time.monotonic() < deadline, "no run claimed the pool slot"
        time.sleep(0.02)


def _kill_tree(pid: int) -> None:
    for victim in [pid, *_descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def _wait(instance: DagsterInstance, run_id: str, seconds: float = 300) -> DagsterRunStatus:
    deadline = time.monotonic() + seconds
    while not (run := instance.get_run_by_id(run_id)).is_finished:
        assert time.monotonic() < deadline, f"run {run_id} did not finish ({run.status})"
        time.sleep(0.5)
    return run.status


def _versions(home: Path) -> dict[str, str]:
    return {
        name: OutputPort(home, "finance", name).require_current().version
        for name in ("delay_costs", "weekly_delay_impact")
    }


def _pending(instance: DagsterInstance) -> set[str]:
    info = instance.event_log_storage.get_concurrency_info(FINANCE_POOL)
    return {s.run_id for s in info.pending_steps if s.assigned_timestamp is None}


def test_sigkilled_dbt_worker_frees_the_pool_and_the_waiting_run_proceeds(materialized, mesh_home):
    """The worker alone is killed: its code server marks the run failed, but
    Dagster leaves the pool slot claimed, so the next finance run would wait."""
    before = _versions(mesh_home)
    with DagsterInstance.get() as instance, workspace_context(instance, {"finance"}) as context:
        killed = launch_run(context, FINANCE_DBT, {"test": "killed"})
        _claimant(instance, [killed])
        worker = run_worker(instance, killed)
        assert worker is not None
        _kill_tree(worker[0])
        waiting = launch_run(context, FINANCE_DBT, {"test": "waiting"})
        deadline = time.monotonic() + 120
        while waiting not in _pending(instance):
            assert time.monotonic() < deadline, "the second run never queued for the pool"
            time.sleep(0.2)
        time.sleep(3)
        assert killed in _claimed(instance, FINANCE_POOL)  # the wedge
        assert not instance.get_run_by_id(waiting).is_finished

        [dead] = sweep_dead_runs(instance)
        assert (dead.run_id, dead.pid, dead.pools) == (killed, worker[0], (FINANCE_POOL,))
        assert dead.waiting == (waiting,)
        assert _wait(instance, waiting) == DagsterRunStatus.SUCCESS
        assert instance.get_run_by_id(killed).status == DagsterRunStatus.FAILURE
        said = [
            r.event_log_entry.message or "" for r in instance.get_records_for_run(waiting).records
        ]
        assert any(f"Waited for pool {FINANCE_POOL}" in m and killed in m for m in said)
    after = _versions(mesh_home)
    assert all(after[k] > before[k] for k in before)


def test_materialize_after_a_sigkilled_cli_run_frees_the_pool_and_says_so(materialized, mesh_home):
    """The whole `dagmesh materialize` (CLI, and the materialization's run
    worker with its code servers, run workers and dbt: the CLI alone going
    away no longer stops anything) is killed: nobody is left to end the run,
    which stays STARTED holding the slot."""
    dagmesh = str(Path(sys.executable).with_name("dagmesh"))
    refs = ["finance/delay_costs", "finance/weekly_delay_impact"]
    cli = subprocess.Popen(
        [dagmesh, "materialize", *refs],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    with DagsterInstance.get() as instance:
        try:
            killed = _claimant(instance)
            materialization = instance.get_run_by_id(killed).tags["dagmesh/materialization"]
            _kill_tree(run_worker(instance, materialization)[0])
            _kill_tree(cli.pid)
        finally:
            cli.kill()
            cli.wait()
        worker = run_worker(instance, killed)
        time.sleep(2)
        assert instance.get_run_by_id(killed).status == DagsterRunStatus.STARTED  # the wedge
        assert killed in _claimed(instance, FINANCE_POOL)
        before = _versions(mesh_home)

        notices: list[str] = []
        outcome = materialize(refs, timeout=300, on_notice=notices.append)

        assert outcome.success, [f.message for f in outcome.failures]
        # The materialization's own run died too (it holds no pool): the sweep
        # ends it, unless its code server saw the worker die first and did.
        dead = {d.run_id: d for d in outcome.dead_runs}
        assert set(dead) - {materialization} == {killed}
        if materialization not in dead:
            assert instance.get_run_by_id(materialization).status == DagsterRunStatus.FAILURE
        assert dead[killed].pools == (FINANCE_POOL,)
        assert any(killed in n and f"pid {worker[0]}" in n and FINANCE_POOL in n for n in notices)
        assert instance.get_run_by_id(killed).status == DagsterRunStatus.FAILURE
        assert not _claimed(instance, FINANCE_POOL) - {None}
    after = _versions(mesh_home)
    assert all(after[k] > before[k] for k in before)
    for name, version in before.items():  # the previous versions are kept and readable
        assert (OutputPort(mesh_home, "finance", name).versions_dir / version).is_dir()
