"""The mesh's Dagster instance: its dagster.yaml, written for the selected
profile (:func:`dagmesh.config.profile`).

The embedded default keeps SQLite storage under DAGMESH_HOME and starts runs
at once. A profile may put the instance on PostgreSQL (run, event log and
schedule storage; every connection setting an ``{env: VAR}`` reference, so
no secret is ever written to the file) and queue runs: Dagster's
QueuedRunCoordinator with a global cap and a limit per domain on the
``dagster/code_location`` tag, which Dagster puts on every run (a run
launched from the UI too) and whose value is the domain.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from dagmesh import config
from dagmesh.engine.atomic import write_atomically

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
# launcher, no daemon under `dagmesh materialize`): dagmesh.orchestration.dead_runs.
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


# The run tag Dagster sets on every run: its code location, i.e. its domain.
DOMAIN_RUN_TAG = "dagster/code_location"
QUEUE_DAEMON = "QUEUED_RUN_COORDINATOR"
DEQUEUE_SECONDS = 1


def dagster_yaml(profile: config.Profile | None = None) -> str:
    """The dagster.yaml of ``profile`` (default: the selected one)."""
    profile = profile or config.profile()
    if profile.instance == "sqlite" and not profile.queued:
        return EMBEDDED_DAGSTER_YAML
    settings: dict[str, Any] = yaml.safe_load(EMBEDDED_DAGSTER_YAML)
    if profile.instance == "postgres":
        settings["storage"] = {"postgres": {"postgres_db": _postgres_db(profile)}}
    if profile.queued:
        settings["run_coordinator"] = {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            # Dagster's default looks at the queue every 5 s: a cross-domain
            # materialization waits in it once per domain on its critical
            # path. Once a second is one cheap query to the run storage.
            "config": {"dequeue_interval_seconds": DEQUEUE_SECONDS},
        }
        # With a `concurrency` block (the pools above) Dagster takes the
        # queue's limits only from `concurrency: runs`.
        settings["concurrency"]["runs"] = _queue(profile)
    header = (
        f"{WRITTEN_BY_DAGMESH} for profile {profile.name} (DAGMESH_PROFILE); "
        "secrets are {env: VAR} references, read by Dagster when it loads the instance.\n"
    )
    return header + yaml.safe_dump(settings, sort_keys=False)


def _postgres_db(profile: config.Profile) -> dict[str, Any]:
    """Each connection setting: the profile's (never a secret) or ``{env: VAR}``."""
    settings: dict[str, Any] = {
        key: profile.postgres.get(key, {"env": env}) for key, env in config.PG_ENV.items()
    }
    # dagster-postgres depends on psycopg2, while SQLAlchemy 2.1 maps a bare
    # postgresql:// to psycopg 3: name the driver that is installed.
    settings["scheme"] = "postgresql+psycopg2"
    return settings


def _queue(profile: config.Profile) -> dict[str, Any]:
    """The run queue: a global cap and one limit per domain.

    Dagster applies every matching rule, so the rule for all domains
    (``applyLimitPerUniqueValue``) carries the highest limit, and each
    domain of the workspace gets its own rule with its own limit (a domain
    added later gets the highest until this file is written again).
    """
    queue: dict[str, Any] = {}
    default = profile.domain_run_limit
    overrides = profile.domain_run_limits
    # A cross-domain materialization is a run (location `mesh`) that waits
    # for its domains' runs: the cap has room for every one that may run at
    # once (their own rule below), so they can never hold all the slots.
    # (The rule for all domains applies to `mesh` too, when there is one.)
    mesh_limit = config.MESH_RUN_LIMIT
    if default is not None:
        mesh_limit = min(mesh_limit, max([default, *overrides.values()]))
    if profile.max_concurrent_runs:
        queue["max_concurrent_runs"] = profile.max_concurrent_runs + mesh_limit
    mesh_rule = {"key": DOMAIN_RUN_TAG, "value": config.MESH_LOCATION, "limit": mesh_limit}
    if default is None and not overrides:
        if profile.max_concurrent_runs:
            queue["tag_concurrency_limits"] = [mesh_rule]
        return queue
    rules = []
    if default is not None:
        rules.append(
            {
                "key": DOMAIN_RUN_TAG,
                "value": {"applyLimitPerUniqueValue": True},
                "limit": max([default, *overrides.values()]),
            }
        )
        domains = sorted(set(workspace_domains()) | set(overrides))
    else:
        domains = sorted(overrides)
    rules += [
        {"key": DOMAIN_RUN_TAG, "value": d, "limit": overrides.get(d, default)} for d in domains
    ]
    queue["tag_concurrency_limits"] = [*rules, mesh_rule]
    return queue


def workspace_domains() -> list[str]:
    """The location (= domain) names of the workspace runs load."""
    path = config.run_workspace_file()
    entries = (yaml.safe_load(path.read_text()) or {}).get("load_from") or []
    names = []
    for entry in entries:
        for target in entry.values():
            if isinstance(target, str):  # `python_module: domains.x.definitions`
                names.append(target.split(".")[-2] if "." in target else target)
            elif isinstance(target, dict):
                module = str(target.get("module_name", ""))
                names.append(target.get("location_name") or module.split(".")[-2:][0])
    return [n for n in names if n]


def ensure_dagster_home() -> Path:
    """Set DAGSTER_HOME (default ``$DAGMESH_HOME/dagster``) and give it the
    selected profile's dagster.yaml. Returns the folder.

    Raises SettingError naming every environment variable the profile's
    instance needs that is unset (checked here, before Dagster fails on it
    somewhere deeper).
    """
    profile = config.profile()
    config.check_profile_env(profile)
    home = config.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    wanted = dagster_yaml(profile)
    # Our own file is brought up to date; an operator's file is left alone.
    if not settings.exists() or (
        settings.read_text().startswith(WRITTEN_BY_DAGMESH) and settings.read_text() != wanted
    ):
        write_atomically(settings, wanted)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
