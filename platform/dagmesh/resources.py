"""The Dagster resource every domain's products use: the mesh's storage and
the DuckDB engine that computes inside it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from dagmesh import config
from dagmesh.storage import OutputPort


class MeshStorage(dg.ConfigurableResource):
    """Storage of the mesh: output ports under ``DAGMESH_HOME`` and an
    in-process DuckDB that computes each product.

    Every step opens its own in-memory DuckDB (spilling to the domain's
    ``tmp/`` folder) and reads its inputs from published Parquet versions, so
    parallel steps and concurrent runs never contend for a database file.
    """

    home: str | None = Field(
        default=None, description="Data directory; defaults to DAGMESH_HOME or <project>/.dagmesh"
    )
    keep_versions: int = Field(default=5, description="Published versions kept per product")
    memory_limit: str | None = Field(
        default=None, description="DuckDB memory_limit per step, e.g. '8GB' (DuckDB's default)"
    )
    threads: int | None = Field(default=None, description="DuckDB threads per step")

    @property
    def home_path(self) -> Path:
        """The resolved data directory."""
        return Path(self.home).resolve() if self.home else config.mesh_home()

    @property
    def landing_path(self) -> Path:
        """Where source systems drop raw files."""
        return self.home_path / "landing"

    def port(self, domain: str, product: str) -> OutputPort:
        """The output port of ``domain/product``."""
        return OutputPort(self.home_path, domain, product)

    def domain_dir(self, domain: str) -> Path:
        """The storage area that only ``domain`` writes."""
        return self.home_path / "domains" / domain

    def connect(self, domain: str) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory DuckDB for one step of ``domain``."""
        spill = self.domain_dir(domain) / "tmp"
        spill.mkdir(parents=True, exist_ok=True)
        settings: dict[str, str | int | bool] = {"temp_directory": str(spill)}
        if self.memory_limit:
            settings["memory_limit"] = self.memory_limit
        if self.threads:
            settings["threads"] = self.threads
        return duckdb.connect(":memory:", config=settings)
