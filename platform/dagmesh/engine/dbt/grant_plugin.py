"""A dbt-duckdb plugin that locks a dbt run's DuckDB to the run's grant.

The profile dagmesh writes for a domain's dbt project names this plugin with
the path of a grant file (:class:`dagmesh.engine.grants.Grant` as JSON), which
:mod:`dagmesh.orchestration.dbt.run` rewrites before each ``dbt build``: the pinned
versions of the ports the selected models read, the ``ports`` database file,
the project's seed files and the run's spill folder. dbt-duckdb calls
:meth:`Plugin.configure_connection` once per run, right after opening the
domain's warehouse file and before attaching ``ports``, so no model, hook
or test runs before the lock; without a readable grant file nothing outside
the warehouse is granted (fail closed).

With ports on object storage (a profile's ``ports = "s3://..."``), the
``ports`` views read ``s3://`` objects: before the lock the connection gets
httpfs (from its wheel) and a secret with only the run's domain's identity
(``config: {domain: ...}``), so the store refuses what that identity may
not read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection

from dagmesh.engine import objectstore
from dagmesh.engine.grants import Grant, lock


class Plugin(BasePlugin):
    """Locks the connection to the grant in ``config: {grant_file: ..., domain: ...}``."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        """Remember where the grant file is (read at connect time, not here:
        ``dbt parse`` loads the plugin before any run wrote one)."""
        self.grant_file = Path(plugin_config["grant_file"])
        self.domain: str | None = plugin_config.get("domain")

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        """Lock ``conn`` to the run's grant, or to nothing if there is none."""
        try:
            grant = Grant.from_json(self.grant_file.read_text())
        except (OSError, ValueError, KeyError):
            grant = Grant(step="dbt", home=Path())
        store = objectstore.from_profile()
        if store is not None and self.domain:
            store.attach(conn, self.domain)
        lock(conn, grant)
