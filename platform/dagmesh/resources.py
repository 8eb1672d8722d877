"""The Dagster resource every domain's products use: the mesh's storage and
the DuckDB engine that computes inside it."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from dagmesh import config
from dagmesh.storage import OutputPort


def default_memory_limit() -> str:
    """``DAGMESH_DUCKDB_MEMORY_LIMIT``, else 80 % of RAM divided by the runs
    that may go at once (``DAGMESH_MAX_RUNS`` or the cores): DuckDB's own
    default gives every step 80 % of RAM, so concurrent steps could together
    ask for more than the machine has; past the limit DuckDB spills to disk."""
    if env := os.environ.get("DAGMESH_DUCKDB_MEMORY_LIMIT"):
        return env
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    runs = int(os.environ.get("DAGMESH_MAX_RUNS", 0)) or os.cpu_count() or 1
    return f"{int(ram * 0.8 / runs) // 2**20}MB"


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
        default=None,
        description="DuckDB memory_limit per step, e.g. '8GB'; default: "
        "DAGMESH_DUCKDB_MEMORY_LIMIT, else 80% of RAM shared by the concurrent runs",
    )
    threads: int | None = Field(default=None, description="DuckDB threads per step")
    pii_key: str | None = Field(
        default=None,
        description="Secret of the keyed hash that masks joinable PII columns for other "
        "domains; give it as EnvVar('DAGMESH_PII_KEY'), never as a literal",
    )

    def masking_key(self) -> bytes | None:
        """The keyed-hash secret: ``pii_key``, else ``DAGMESH_PII_KEY``."""
        value = self.pii_key or os.environ.get("DAGMESH_PII_KEY")
        return value.encode() if value else None

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
        settings: dict[str, str | int | bool] = {
            "temp_directory": str(spill),
            "memory_limit": self.memory_limit or default_memory_limit(),
        }
        if self.threads:
            settings["threads"] = self.threads
        return duckdb.connect(":memory:", config=settings)
