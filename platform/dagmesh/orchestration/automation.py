"""How a product stays up to date, on Dagster's declarative automation.

A product declares one of:

- ``on_demand()`` (the default): only when someone materializes it;
- ``when_upstream_changes()``: after any product it consumes, in any domain,
  publishes a new version (Dagster's ``AutomationCondition.eager()``); an
  upstream whose blocking checks failed published nothing, so its consumers
  do not refresh on bad data;
- ``on_cron("0 6 * * *")``: on a schedule, once its upstream has updated
  since the last tick (``AutomationCondition.on_cron``).

Each domain's code location runs one automation condition sensor over its
products, on by default; the daemon evaluates it against the whole
workspace, so an edge across code locations triggers like any other.
dbt models declare the same in their yml: ``config: {meta: {dagmesh:
{refresh: upstream}}}`` or ``{refresh: "cron: 0 6 * * *"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg


def on_demand() -> None:
    """Refresh only when materialized by hand (UI, ``dagmesh materialize``)."""
    return None


def when_upstream_changes() -> dg.AutomationCondition:
    """Refresh after any consumed product publishes a new version."""
    return dg.AutomationCondition.eager()


def on_cron(schedule: str, timezone: str = "UTC") -> dg.AutomationCondition:
    """Refresh on a cron schedule (after its inputs have updated since the last tick)."""
    return dg.AutomationCondition.on_cron(schedule, timezone)


def from_dbt_meta(meta: Mapping[str, Any]) -> dg.AutomationCondition | None:
    """A dbt node's ``meta.dagmesh.refresh``: ``upstream``, ``cron: <expr>`` or absent."""
    refresh = str((meta.get("dagmesh") or {}).get("refresh") or "").strip()
    if not refresh or refresh == "on_demand":
        return None
    if refresh == "upstream":
        return when_upstream_changes()
    if refresh.startswith("cron:"):
        return on_cron(refresh.removeprefix("cron:").strip())
    raise ValueError(
        f"meta.dagmesh.refresh {refresh!r}: use 'upstream', 'cron: <expr>' or 'on_demand'"
    )


def automation_sensor(domain: str) -> dg.AutomationConditionSensorDefinition:
    """The domain's automation condition sensor, running by default."""
    return dg.AutomationConditionSensorDefinition(
        f"{domain}_automation",
        target=dg.AssetSelection.groups(domain),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Refreshes the {domain} products that declare how they stay up to date.",
    )
