"""The Dagster resource every domain's products use: the mesh's storage and
the DuckDB engine that computes inside it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from dagmesh import config
from dagmesh.engine import objectstore
from dagmesh.engine.grants import Grant
from dagmesh.engine.storage import MeshStore, OutputPort


class MeshStorage(dg.ConfigurableResource):
    """The Dagster resource of the mesh's storage: its settings, configurable
    per deployment; :meth:`store` gives the engine's
    :class:`~dagmesh.engine.storage.MeshStore` (ports, and a DuckDB per step)."""

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

    def store(self) -> MeshStore:
        """The engine's view of this storage (what build and publish use)."""
        return MeshStore(
            home_path=self.home_path,
            keep_versions=self.keep_versions,
            memory_limit=self.memory_limit,
            threads=self.threads,
            pii_key=self.pii_key or config.pii_key(),
            objects=objectstore.from_profile(),
        )

    @property
    def home_path(self) -> Path:
        """The resolved data directory."""
        return Path(self.home).resolve() if self.home else config.mesh_home()

    # The engine's methods, so the resource can stand where a store is expected.
    def masking_key(self) -> bytes | None:
        """The keyed-hash secret: ``pii_key``, else ``DAGMESH_PII_KEY``."""
        return self.store().masking_key()

    @property
    def landing_path(self) -> Path:
        """Where source systems drop raw files."""
        return self.store().landing_path

    @property
    def model_threads(self) -> int | None:
        """scikit-learn's threads in a model step: not set here (the asset
        counts the runs going; else :func:`dagmesh.engine.learning.model_threads`)."""
        return None

    def port(self, domain: str, product: str, reader: str | None = None) -> OutputPort:
        """The output port of ``domain/product`` (read as ``reader``'s domain)."""
        return self.store().port(domain, product, reader)

    def domain_dir(self, domain: str) -> Path:
        """The storage area that only ``domain`` writes."""
        return self.store().domain_dir(domain)

    def step_grant(self, product_ref: str, staging: Path, files: list[Path], run_id: str) -> Grant:
        """What a step of ``product_ref`` may touch (see :meth:`MeshStore.step_grant`)."""
        return self.store().step_grant(product_ref, staging, files, run_id)

    def connect(self, domain: str, grant: Grant | None = None) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory DuckDB for one step of ``domain``, locked to ``grant``."""
        return self.store().connect(domain, grant)
