"""The Dagster instance of the embedded mesh: SQLite storage under DAGMESH_HOME."""

from __future__ import annotations

import os
from pathlib import Path

from dagmesh import config

# The embedded default: runs start at once (no queue daemon needed for the
# CLI), and the automation/sensor daemons are on when `dagster dev` runs.
EMBEDDED_DAGSTER_YAML = """\
# Written by dagmesh for the embedded default (SQLite under DAGMESH_HOME).
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
# One step at a time per pool: a domain's dbt runs share its DuckDB file
# (pool dagmesh-dbt-<domain>), and DuckDB allows one writing process per file.
concurrency:
  pools:
    granularity: op
    default_limit: 1
# With the daemon (dagster dev): runs stuck STARTING/CANCELING fail, killed
# runs are not resumed, and slots a finished run still holds are freed.
# Runs left STARTED by a dead worker (no health check in the default
# launcher, no daemon under `dagmesh materialize`): dagmesh.dead_runs.
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 30
  free_slots_after_run_end_seconds: 30
telemetry:
  enabled: false
"""
WRITTEN_BY_DAGMESH = "# Written by dagmesh"


def ensure_dagster_home() -> Path:
    """Set DAGSTER_HOME (default ``$DAGMESH_HOME/dagster``) and give it a
    dagster.yaml if it has none. Returns the folder."""
    home = config.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    # Our own file is brought up to date; an operator's file is left alone.
    if not settings.exists() or (
        settings.read_text().startswith(WRITTEN_BY_DAGMESH)
        and settings.read_text() != EMBEDDED_DAGSTER_YAML
    ):
        settings.write_text(EMBEDDED_DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


# No network calls from dbt at run time (version check, usage stats), no telemetry.
QUIET_ENV = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DBT_VERSION_CHECK": "false",
    "DAGSTER_DISABLE_TELEMETRY": "true",
}


def quiet_tools() -> None:
    """Set :data:`QUIET_ENV` in this process (and so in its children)."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
