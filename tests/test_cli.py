"""The `dagmesh` command as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

DAGMESH = str(Path(sys.executable).with_name("dagmesh"))


def _run(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DAGMESH_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [DAGMESH, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def test_with_upstream_failure_names_the_product_and_the_run(mesh_home: Path, tmp_path: Path):
    home = tmp_path / "home"
    shutil.copytree(mesh_home / "landing", home / "landing")
    shutil.copytree(mesh_home / "registry", home / "registry")
    broken = sorted((home / "landing/shop/orders").glob("*.csv"))[0]
    broken.write_text("order_id,total\n1,2\n")

    result = _run(home, "materialize", "shipping/shipping_delays", "--with-upstream")

    assert result.returncode == 1, result.stderr[-3000:]
    output = " ".join(result.stderr.split())
    assert "FAILED sales/orders in run" in output
    assert f"{broken.name} has the wrong columns" in output
    assert "not run (upstream failed): shipping/shipping_delays" in output
    assert "✓ shipping/shipments" in output  # what could run, ran


def test_unknown_product_is_a_usage_error(mesh_home: Path, tmp_path: Path):
    result = _run(tmp_path / "home", "materialize", "sales/nope")
    assert result.returncode == 2
    assert "no product 'sales/nope' in the mesh" in " ".join(result.stderr.split())
