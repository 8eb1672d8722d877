"""The audit trail: real files, real DuckDB, real concurrent processes."""

from __future__ import annotations

import json
import multiprocessing
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from dagmesh.engine import audit_log

PROCESSES = 4
APPENDS = 200
# Big enough that a torn or interleaved write would show up as broken JSON
# or as a payload mixing two writers.
PAYLOAD = 2_000


def _log_files(home: Path) -> list[Path]:
    return sorted((home / audit_log.AUDIT_DIR).glob("events-*.jsonl"))


def test_publish_read_and_denied_are_recorded_and_queried(tmp_path: Path):
    assert audit_log.query(tmp_path) == []

    audit_log.record_publish(
        tmp_path,
        run_id="9b2f0d4e-8f5c-4a0e-b7a1-3c1d2e4f5a6b",
        product="sales/orders",
        version="2025-01-31",
        rows=1200,
        contract_version="1.2.0",
    )
    audit_log.record_read(
        tmp_path,
        run_id="run-2",
        consumer="customers/customer_360",
        product="sales/orders",
        version="2025-01-31",
    )
    audit_log.record_denied(
        tmp_path,
        run_id="run-3",
        consumer="marketing",
        product="sales/orders",
        reason="not an allowed consumer",
    )
    audit_log.record_publish(
        tmp_path,
        run_id="run-4",
        product="customers/customer_360",
        version="v7",
        rows=10,
        contract_version=None,
    )

    (log_file,) = _log_files(tmp_path)
    assert log_file.name == f"events-{datetime.now(UTC):%Y-%m}.jsonl"
    assert stat.S_IMODE(log_file.stat().st_mode) & ~0o640 == 0
    first = json.loads(log_file.read_text().splitlines()[0])
    assert list(first)[:2] == ["at", "event"]
    assert datetime.fromisoformat(first["at"]).utcoffset().total_seconds() == 0
    assert len(first["at"].split(".")[1]) == len("123456+00:00")

    events = audit_log.query(tmp_path, product="sales/orders")
    assert [e["event"] for e in events] == ["publish", "read", "read_denied"]
    publish, read, denied = events
    # Values come back as recorded, not as DuckDB's sniffed DATE/UUID types.
    assert publish["run_id"] == "9b2f0d4e-8f5c-4a0e-b7a1-3c1d2e4f5a6b"
    assert publish["version"] == "2025-01-31"
    assert publish["rows"] == 1200
    assert publish["contract_version"] == "1.2.0"
    assert publish["at"] == first["at"]
    assert read["consumer"] == "customers/customer_360"
    assert read["version"] == "2025-01-31"
    assert read["run_id"] == "run-2"
    assert denied["consumer"] == "marketing"
    assert denied["reason"] == "not an allowed consumer"
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)

    # As the consumer: the read it made, plus its own publish.
    as_consumer = audit_log.query(tmp_path, product="customers/customer_360")
    assert [(e["event"], e["product"]) for e in as_consumer] == [
        ("read", "sales/orders"),
        ("publish", "customers/customer_360"),
    ]
    assert as_consumer[1]["contract_version"] is None

    assert [e["run_id"] for e in audit_log.query(tmp_path, event="publish")] == [
        "9b2f0d4e-8f5c-4a0e-b7a1-3c1d2e4f5a6b",
        "run-4",
    ]
    reads = audit_log.query(tmp_path, product="customers/customer_360", event="read")
    assert [e["run_id"] for e in reads] == ["run-2"]
    assert audit_log.query(tmp_path, product="finance/ledger") == []
    assert len(audit_log.query(tmp_path)) == 4

    table = audit_log.format_events(events)
    assert [c.header for c in table.columns] == list(audit_log.COLUMNS)
    assert table.row_count == 3
    console = Console(record=True, width=400)
    console.print(table)
    assert "not an allowed consumer" in console.export_text()


def test_query_before_any_read_or_denial_exists(tmp_path: Path):
    # Only publishes on file: there is no consumer column in the data yet.
    audit_log.record_publish(
        tmp_path, run_id="r", product="sales/orders", version="1", rows=1, contract_version=None
    )
    assert [e["event"] for e in audit_log.query(tmp_path, product="sales/orders")] == ["publish"]
    assert audit_log.query(tmp_path, product="customers/customer_360") == []


def test_events_across_monthly_files_are_read_together_oldest_first(tmp_path: Path):
    directory = tmp_path / audit_log.AUDIT_DIR
    directory.mkdir()
    # An older month written after the current one: order comes from "at", not write order.
    audit_log.record_read(tmp_path, run_id="now", consumer="c/x", product="p/y", version="2")
    old = {"at": "2020-01-15T08:00:00.000001+00:00", "event": "publish", "product": "p/y"}
    (directory / "events-2020-01.jsonl").write_text(json.dumps(old) + "\n")
    events = audit_log.query(tmp_path, product="p/y")
    assert [e["event"] for e in events] == ["publish", "read"]
    assert events[0]["at"] == old["at"]


def test_torn_tail_line_is_skipped_not_fatal(tmp_path: Path):
    audit_log.record_read(tmp_path, run_id="r1", consumer="c/x", product="p/y", version="1")
    (log_file,) = _log_files(tmp_path)
    with log_file.open("a") as f:
        f.write('{"at":"2025-01-01T00:00:00.0')  # a crash mid-write
    assert [e["run_id"] for e in audit_log.query(tmp_path, product="p/y")] == ["r1"]


def _append_many(home: str, worker: int, start: multiprocessing.synchronize.Event) -> None:
    start.wait()
    for i in range(APPENDS):
        audit_log.record_read(
            Path(home),
            run_id=f"w{worker}-{i}",
            consumer=f"domain{worker}/consumer",
            product="sales/orders",
            version=str(worker) * PAYLOAD,
        )


def test_concurrent_appenders_never_tear_lines(tmp_path: Path):
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers = [
        ctx.Process(target=_append_many, args=(str(tmp_path), n, start)) for n in range(PROCESSES)
    ]
    for w in workers:
        w.start()
    start.set()  # release them together so the appends really overlap
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0

    lines = [line for f in _log_files(tmp_path) for line in f.read_bytes().split(b"\n") if line]
    assert len(lines) == PROCESSES * APPENDS
    seen = set()
    for line in lines:
        entry = json.loads(line)
        worker = entry["run_id"][1]
        assert entry["version"] == worker * PAYLOAD
        assert entry["consumer"] == f"domain{worker}/consumer"
        seen.add(entry["run_id"])
    assert len(seen) == PROCESSES * APPENDS

    events = audit_log.query(tmp_path, product="sales/orders")
    assert len(events) == PROCESSES * APPENDS
    assert {e["run_id"] for e in events} == seen
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    # Each writer's own events keep their order.
    for n in range(PROCESSES):
        mine = [int(e["run_id"].split("-")[1]) for e in events if e["run_id"][1] == str(n)]
        assert mine == list(range(APPENDS))


@pytest.mark.parametrize("name", ["sales/o'rders", "sales/o''rders' OR '1'='1", 'sales/"x"'])
def test_quotes_in_a_product_name_are_queried_safely(tmp_path: Path, name: str):
    audit_log.record_publish(
        tmp_path, run_id="r1", product="sales/orders", version="1", rows=1, contract_version=None
    )
    assert audit_log.query(tmp_path, product=name) == []
    audit_log.record_denied(
        tmp_path, run_id="r2", consumer=name, product="sales/orders", reason="x"
    )
    (denied,) = audit_log.query(tmp_path, product=name)
    assert denied["consumer"] == name
    assert denied["event"] == "read_denied"


def test_unknown_event_is_rejected(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown audit event"):
        audit_log.record(tmp_path, "delete", product="sales/orders")
    with pytest.raises(ValueError, match="unknown audit event"):
        audit_log.query(tmp_path, event="delete")
    with pytest.raises(ValueError):
        audit_log.record(tmp_path, "read", at="yesterday")
    assert not (tmp_path / audit_log.AUDIT_DIR).exists()
