"""No lock errors: concurrent domain runs, parallel steps, and SIGKILL mid-write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster import DagsterInstance
from dagster._core.storage.dagster_run import DagsterRunStatus

from dagmesh.engine.storage import OutputPort
from dagmesh.orchestration.definitions import domain_definitions
from dagmesh.orchestration.runner import launch_run, workspace_context
from domains.sales.products import sales
from tests.conftest import port_file, query


def _row_counts(home: Path, refs: list[str]) -> dict[str, int]:
    return {ref: query(f"SELECT count(*) FROM '{port_file(home, ref)}'")[0][0] for ref in refs}


def test_all_five_domains_run_at_the_same_time_repeatedly(materialized, mesh_home: Path):
    refs = materialized.materialized
    expected = _row_counts(mesh_home, refs)
    with DagsterInstance.get() as instance, workspace_context(instance) as context:
        graph = context.create_request_context().asset_graph
        by_domain: dict[str, list] = {}
        for key in graph.materializable_asset_keys:
            by_domain.setdefault(key.path[0], []).append(key)
        assert len(by_domain) == 5
        for round_no in range(2):
            run_ids = [
                launch_run(context, keys, {"test/round": str(round_no)})
                for keys in by_domain.values()
            ]
            deadline = time.monotonic() + 300
            while not all(instance.get_run_by_id(r).is_finished for r in run_ids):
                assert time.monotonic() < deadline, "runs did not finish"
                time.sleep(0.5)
            statuses = [instance.get_run_by_id(r).status for r in run_ids]
            assert statuses == [DagsterRunStatus.SUCCESS] * 5, round_no
            # Every port is complete after each round (the data is deterministic).
            assert _row_counts(mesh_home, refs) == expected


def test_parallel_steps_with_the_multiprocess_executor(materialized, mesh_home: Path):
    with DagsterInstance.get() as instance:
        # Reconstructable through the code location so each step is its own process.
        result = dg.execute_job(
            dg.reconstructable(_sales_job),
            instance=instance,
            run_config={"execution": {"config": {"max_concurrent": 2}}},
        )
        assert result.success
    assert _row_counts(mesh_home, ["sales/orders"])["sales/orders"] > 0


def _sales_job():
    return domain_definitions(sales, executor="multiprocess").resolve_job_def("sales_products")


KILLED_WRITER = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from dagmesh import Column, Domain
    from dagmesh.orchestration.assets import product_asset
    from dagmesh.orchestration.resources import MeshStorage

    rows = int(sys.argv[2])
    lab = Domain("lab", owner="lab", description="Crash tests.")
    lab.sql_product(
        "big",
        description="Many rows.",
        columns=[Column("n", "BIGINT", "n"), Column("h", "VARCHAR", "hash")],
        sql=f"SELECT range AS n, md5(range::VARCHAR) AS h FROM range({rows})",
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [product_asset(lab.products["big"])],
            resources={"mesh": MeshStorage(home=sys.argv[1], threads=1)},
            instance=instance,
        )
    sys.exit(0 if result.success else 1)
    """
)


def test_sigkill_while_writing_leaves_the_port_intact(tmp_path: Path):
    home = tmp_path / "home"
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)

    def writer(rows: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(home), str(rows)])

    assert writer(1000).wait(timeout=120) == 0
    port = OutputPort(home, "lab", "big")
    before = port.require_current()

    process = writer(60_000_000)
    staging = home / "domains/lab/staging/big"
    deadline = time.monotonic() + 120
    while not any(staging.glob("*/data.parquet*")) and not any(staging.glob("*/*.parquet*")):
        assert process.poll() is None, "the writer ended before it started writing"
        assert time.monotonic() < deadline, "the writer never started writing"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    assert port.require_current() == before
    assert len(pd.read_parquet(before.data_file)) == 1000
    assert any(staging.iterdir())  # the partial write is left behind, unpublished

    assert writer(2000).wait(timeout=120) == 0
    assert len(pd.read_parquet(port.require_current().data_file)) == 2000
    assert not any(staging.iterdir())  # and swept by the rerun


def _step_window(instance: DagsterInstance, run_id: str) -> tuple[float, float]:
    times = {
        r.event_log_entry.dagster_event.event_type_value: r.event_log_entry.timestamp
        for r in instance.get_records_for_run(run_id).records
        if r.event_log_entry.dagster_event
        and r.event_log_entry.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")
    }
    return times["STEP_START"], times["STEP_SUCCESS"]


def test_two_runs_of_one_dbt_domain_take_turns_on_its_database(materialized, mesh_home: Path):
    """Both runs open finance's DuckDB file: the pool dagmesh-dbt-finance
    (limit 1) makes the second step wait instead of failing on the lock."""
    keys = [
        dg.AssetKey(["finance", "delay_costs"]),
        dg.AssetKey(["finance", "weekly_delay_impact"]),
    ]
    with DagsterInstance.get() as instance, workspace_context(instance, {"finance"}) as context:
        run_ids = [launch_run(context, keys, {"test": "pool"}) for _ in range(2)]
        deadline = time.monotonic() + 300
        while not all(instance.get_run_by_id(r).is_finished for r in run_ids):
            assert time.monotonic() < deadline, "runs did not finish"
            time.sleep(0.5)
        assert [instance.get_run_by_id(r).status for r in run_ids] == [DagsterRunStatus.SUCCESS] * 2
        first, second = sorted(_step_window(instance, r) for r in run_ids)
    assert second[0] >= first[1] - 0.5, (first, second)  # one after the other
