"""Pins, publish-before-record, broken ports and bad settings (issue 12,
items 5, 6 and 7): each case asserts the clear error and that the last good
published version survived."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from dagmesh import Column, Domain, Landing
from dagmesh.declarations.product import MAX_NAME_LENGTH, check_identifier
from dagmesh.declarations.spec import python_spec
from dagmesh.engine import audit_log
from dagmesh.engine.access import read_port
from dagmesh.engine.build import build_product
from dagmesh.engine.port_health import port_violations
from dagmesh.engine.publish import AuditRecordError
from dagmesh.engine.storage import MeshStore, OutputPort, PortBrokenError
from dagmesh.orchestration.assets import product_asset
from dagmesh.orchestration.resources import MeshStorage
from dagmesh.tools.catalog import catalog_entry
from tests.conftest import REPO

DAGMESH = str(Path(sys.executable).with_name("dagmesh"))


def _lab(home: Path) -> Domain:
    """``lab/src`` (one row per line of the landing CSV) and ``lab/slow``,
    which reads ``src`` only when the test lets it."""
    lab = Domain("lab", owner="lab", description="Pins and crashes.")
    lab.sql_product(
        "src",
        description="The landing rows.",
        sources={"rows": Landing("lab/rows", "csv", columns=["n"])},
        columns=[Column("n", "BIGINT", "n", nullable=False)],
        sql="SELECT n::BIGINT AS n FROM rows",
    )
    (home / "landing" / "lab" / "rows").mkdir(parents=True, exist_ok=True)
    return lab


def _deliver(home: Path, rows: int) -> None:
    lines = "".join(f"{i}\n" for i in range(rows))
    (home / "landing" / "lab" / "rows" / "rows.csv").write_text("n\n" + lines)


def _publish_src(lab: Domain, mesh: MeshStore, home: Path, rows: int) -> str:
    _deliver(home, rows)
    result = build_product(lab.products["src"], mesh, f"src-{rows}")
    assert result.published, result.failure_message
    return result.version


def _rows(file: Path) -> int:
    return len(pd.read_parquet(file))


# --------------------------------------------------------------------------- 5: pins


def test_a_consumer_slower_than_many_publishes_reads_its_pinned_version(tmp_path: Path):
    home = tmp_path / "home"
    mesh = MeshStore(home, keep_versions=2)
    lab = _lab(home)
    started, go = threading.Event(), threading.Event()

    @lab.python_product(
        description="Counts src, slowly.",
        consumes=["src"],
        columns=[Column("n", "BIGINT", "rows of src")],
    )
    def slow(ctx):
        started.set()
        assert go.wait(120)
        return ctx.sql("SELECT count(*)::BIGINT AS n FROM src")

    pinned = _publish_src(lab, mesh, home, 3)
    outcome: dict = {}

    def consume() -> None:
        try:
            outcome["result"] = build_product(lab.products["slow"], mesh, "slow-run")
        except Exception as error:  # reported below
            outcome["error"] = error

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert started.wait(60)
    port = OutputPort(home, "lab", "src")
    for rows in range(10, 17):  # 7 publishes, keep=2
        _publish_src(lab, mesh, home, rows)
        assert (port.versions_dir / pinned).is_dir(), "the pinned version was pruned"
    assert port.pinned() == {pinned}
    go.set()
    consumer.join(120)

    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.published and result.inputs == {"lab/src": pinned}
    assert pd.read_parquet(OutputPort(home, "lab", "slow").require_current().data_file)["n"][0] == 3
    assert port.pinned() == set()  # released when the step ended
    _publish_src(lab, mesh, home, 20)
    assert not (port.versions_dir / pinned).exists()  # and pruned at the next publish
    assert len(port.versions()) == 2 and _rows(port.require_current().data_file) == 20


PINNING_READER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from dagmesh.engine.access import read_port
    read = read_port(Path(sys.argv[1]), "lab/reader", "lab/src", "reader-run")
    print(read.version.version, flush=True)
    time.sleep(600)
    """
)


def test_the_pin_of_a_killed_consumer_is_swept(tmp_path: Path):
    home = tmp_path / "home"
    mesh = MeshStore(home, keep_versions=1)
    lab = _lab(home)
    first = _publish_src(lab, mesh, home, 3)
    reader = subprocess.Popen(
        [sys.executable, "-c", PINNING_READER, str(home)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == first
        port = OutputPort(home, "lab", "src")
        _publish_src(lab, mesh, home, 4)
        _publish_src(lab, mesh, home, 5)
        assert (port.versions_dir / first).is_dir()  # pinned by a live reader
    finally:
        os.kill(reader.pid, signal.SIGKILL)
        reader.wait()
    _publish_src(lab, mesh, home, 6)
    assert not (port.versions_dir / first).exists()
    assert [v.version for v in port.versions()] == [port.require_current().version]
    assert not any(port.pins_dir.glob("*/*.json"))


def test_a_denied_read_leaves_no_pin(tmp_path: Path):
    home = tmp_path / "home"
    lab = _lab(home)
    lab.products["src"].access = "private"
    _publish_src(lab, MeshStore(home), home, 3)
    with pytest.raises(PermissionError, match="access denied: sales/x may not read lab/src"):
        read_port(home, "sales/x", "lab/src", "r")
    assert OutputPort(home, "lab", "src").pinned() == set()


# --------------------------------------------------------------------------- broken ports


def _broken(home: Path, how: str) -> tuple[OutputPort, str]:
    lab = _lab(home)
    mesh = MeshStore(home)
    _publish_src(lab, mesh, home, 3)
    version = _publish_src(lab, mesh, home, 4)
    port = OutputPort(home, "lab", "src")
    if how == "deleted version":
        import shutil

        shutil.rmtree(port.versions_dir / version)
        return port, str(port.current_link)
    if how == "dangling current":
        tmp = port.root / ".tmp-link"
        os.symlink("versions/20000101T000000000000Z-gone", tmp)
        os.replace(tmp, port.current_link)
        return port, "versions/20000101T000000000000Z-gone"
    (port.versions_dir / version / "data.parquet").unlink()
    return port, str(port.versions_dir / version / "data.parquet")


BROKEN = ["deleted version", "dangling current", "deleted data file"]


@pytest.mark.parametrize("how", BROKEN)
def test_a_broken_port_fails_its_readers_clearly(tmp_path: Path, how: str):
    home = tmp_path / "home"
    _port, path = _broken(home, how)
    with pytest.raises(PortBrokenError) as raised:
        read_port(home, "lab/reader", "lab/src", "r")
    message = str(raised.value)
    assert message.startswith("lab/src: ") and path in message
    assert "re-materialize lab/src" in message and "No files found" not in message


@pytest.mark.parametrize("how", BROKEN)
def test_lint_names_a_broken_port_and_its_path(tmp_path: Path, how: str):
    home = tmp_path / "home"
    _port, path = _broken(home, how)
    lab = _lab(home)
    [violation] = port_violations([python_spec(lab.products["src"])], home)
    assert str(violation).startswith("lab/src: [port_intact] the published port is broken: ")
    assert path in str(violation)


def test_the_catalog_shows_a_deleted_version_as_broken_not_fresh(tmp_path: Path):
    home = tmp_path / "home"
    lab = _lab(home)
    _deliver(home, 3)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [product_asset(lab.products["src"])],
            resources={"mesh": MeshStorage(home=str(home))},
            instance=instance,
        )
        assert result.success
        spec = python_spec(lab.products["src"])
        assert catalog_entry(spec, None, instance, home).port == "ok"
        port = OutputPort(home, "lab", "src")
        import shutil

        shutil.rmtree(port.require_current().path)
        entry = catalog_entry(spec, None, instance, home)
    assert entry.freshness == "broken port" and not entry.healthy
    assert entry.port.startswith("broken: ") and str(port.current_link) in entry.port


# ------------------------------------------------------------------ 6: record, then publish


def _break_audit_log(home: Path, how: str) -> None:
    folder = audit_log.audit_dir(home)
    if how == "audit dir is a file":
        import shutil

        shutil.rmtree(folder)
        folder.write_text("not a directory")
        return
    for month in folder.glob("events-*.jsonl"):
        month.unlink()
    now = dt.datetime.now(dt.UTC)
    (folder / f"events-{now:%Y-%m}.jsonl").mkdir()  # the month's file is a directory


@pytest.mark.parametrize("how", ["audit dir is a file", "month file is a directory"])
def test_a_publish_that_cannot_be_recorded_does_not_happen(tmp_path: Path, how: str):
    home = tmp_path / "home"
    lab = _lab(home)
    mesh = MeshStore(home)
    good = _publish_src(lab, mesh, home, 3)
    port = OutputPort(home, "lab", "src")
    _break_audit_log(home, how)
    _deliver(home, 5)

    with pytest.raises(AuditRecordError) as raised:
        build_product(lab.products["src"], mesh, "unrecorded")

    message = str(raised.value)
    assert message.startswith("lab/src: the publish of version ")
    assert str(audit_log.audit_dir(home)) in message
    assert f"it was not published and version {good} stays current" in message
    assert port.require_current().version == good
    assert [v.version for v in port.versions()] == [good]
    assert _rows(port.require_current().data_file) == 3
    assert not any(port.staging_root.iterdir())


PUBLISH_LOOP = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from dagmesh.engine.build import build_product
    from dagmesh.engine.storage import MeshStore
    from tests.test_pins_audit_and_ports import _deliver, _lab

    home = Path(sys.argv[1])
    lab = _lab(home)
    mesh = MeshStore(home, keep_versions=3)
    for i in range(1000):
        _deliver(home, 3 + i % 7)
        build_product(lab.products["src"], mesh, f"loop-{i}")
    """
)


def test_sigkill_at_any_point_leaves_no_unrecorded_current_version(tmp_path: Path):
    """A publisher killed at random points, again and again: whatever is
    current is readable and recorded in the audit log."""
    home = tmp_path / "home"
    lab = _lab(home)
    _publish_src(lab, MeshStore(home), home, 2)
    port = OutputPort(home, "lab", "src")
    rng = random.Random(12)
    for _ in range(8):
        loop = subprocess.Popen(
            [sys.executable, "-c", PUBLISH_LOOP, str(home)],
            cwd=REPO,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2.0 + rng.random() * 2.0)  # imports take ~1.5 s; then publishes
        os.kill(loop.pid, signal.SIGKILL)
        loop.wait()
        current = port.require_current()
        recorded = {e["version"] for e in audit_log.query(home, "lab/src", event="publish")}
        assert current.version in recorded
        assert _rows(current.data_file) >= 2
    assert len(recorded) > 8  # the loop did publish between kills
    assert port_violations([python_spec(lab.products["src"])], home) == []


def test_lint_reports_a_current_version_without_a_publish_record(tmp_path: Path):
    home = tmp_path / "home"
    lab = _lab(home)
    version = _publish_src(lab, MeshStore(home), home, 3)
    for month in audit_log.audit_dir(home).glob("events-*.jsonl"):
        month.unlink()
    [violation] = port_violations([python_spec(lab.products["src"])], home)
    assert str(violation).startswith(
        f"lab/src: [publish_audited] current version {version} has no publish record"
    )


# --------------------------------------------------------------------------- 7: names, settings


def test_names_are_identifiers_of_at_most_63_characters():
    assert check_identifier("a" * MAX_NAME_LENGTH, "product") == "a" * MAX_NAME_LENGTH
    with pytest.raises(ValueError, match="product 'aaaa.*' \\(64 characters\\) is too long"):
        check_identifier("a" * 64, "product")
    with pytest.raises(ValueError, match="is not a valid name"):
        check_identifier("orders\n", "product")
    with pytest.raises(ValueError, match="too long"):
        Domain("x" * 300, owner="o", description="d")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DAGMESH_MAX_RUNS", "abc", "DAGMESH_MAX_RUNS='abc' is not a whole number"),
        ("DAGMESH_MAX_RUNS", "1.5", "DAGMESH_MAX_RUNS='1.5' is not a whole number"),
        ("DAGMESH_MAX_RUNS", "0", "DAGMESH_MAX_RUNS='0' is too small; give a whole number ≥ 1"),
        ("DAGMESH_MAX_RUNS", "-4", "DAGMESH_MAX_RUNS='-4' is too small"),
        ("DAGMESH_DUCKDB_MEMORY_LIMIT", "lots", "DAGMESH_DUCKDB_MEMORY_LIMIT='lots' is not a "),
        ("DAGMESH_ALERT_WEBHOOK_TIMEOUT", "soon", "DAGMESH_ALERT_WEBHOOK_TIMEOUT='soon' is not"),
        ("DAGMESH_ALERT_WEBHOOK_TIMEOUT", "nan", "DAGMESH_ALERT_WEBHOOK_TIMEOUT='nan' is not"),
    ],
)
def test_a_bad_numeric_setting_is_one_clear_line(tmp_path: Path, name, value, expected):
    env = {**os.environ, name: value, "DAGMESH_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    result = subprocess.run(
        [DAGMESH, "materialize", "--all"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "home").exists()
