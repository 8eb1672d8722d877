"""Write–audit–publish, once for every kind of product.

A kind (SQL, Python, dbt...) only produces ``staging/data.parquet``; from
there every product takes the same path (:func:`audit_and_publish`): audit
the staged data (schema, not-null, primary key, the contract's quality
rules), and unless a blocking audit failed, publish it (personal data masked
for other domains, the contract kept with the version, one atomic switch of
the port), record the publish in the audit log and read a preview."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import yaml

from dagmesh.declarations.contract import Contract
from dagmesh.declarations.spec import ProductSpec
from dagmesh.engine import audit_log
from dagmesh.engine.checks import AuditOutcome, check_schema, masked_select, row_audits
from dagmesh.engine.contracts.rules import run_quality_rules
from dagmesh.engine.masking import write_masked
from dagmesh.engine.sql import literal
from dagmesh.engine.storage import CONTRACT_FILE, DATA_FILE, RAW_FILE, MeshStore
from dagmesh.errors import DagmeshError

PREVIEW_ROWS = 5


class AuditRecordError(DagmeshError, RuntimeError):
    """A publish could not be recorded in the audit log, so it did not happen."""


@dataclass
class Publication:
    """What write–audit–publish did with one product's staged data."""

    spec: ProductSpec
    outcomes: list[AuditOutcome] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)  # consumed product -> version read
    rows: int = 0
    columns: dict[str, str] = field(default_factory=dict)  # as staged: name -> DuckDB type
    version: str | None = None
    port_file: str | None = None
    preview: list[dict[str, str]] = field(default_factory=list)

    @property
    def published(self) -> bool:
        """True when the new version became the output port."""
        return self.version is not None

    @property
    def blocked(self) -> bool:
        """True when a blocking audit failed."""
        return any(not o.passed and o.blocking for o in self.outcomes)

    @property
    def violations(self) -> list[str]:
        """Every blocking violation."""
        return [v for o in self.outcomes if not o.passed and o.blocking for v in o.violations]

    @property
    def failure_message(self) -> str:
        """Every blocking violation, one per line."""
        return "\n".join(self.violations)


def audit_and_publish(
    con: duckdb.DuckDBPyConnection,
    mesh: MeshStore,
    publication: Publication,
    contract: Contract | None,
    staging: Path,
    run_id: str,
    column_types: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
) -> Publication:
    """Audit ``staging/data.parquet`` and publish it unless a blocking audit
    failed; fills in and returns ``publication``.

    Audits already in ``publication.outcomes`` (a kind may check the schema
    before it writes) are not run again. The version record holds the rows,
    the columns (``column_types``, else as staged), the inputs' versions,
    ``extra`` and the time of publication. ``metrics`` (a model's holdout
    evaluation) is what the contract's ``metric`` rules bound.
    """
    spec = publication.spec
    data = f"read_parquet({literal(staging / DATA_FILE)})"
    described = con.sql(f"DESCRIBE SELECT * FROM {data}").fetchall()
    publication.columns = {name: str(kind) for name, kind, *_ in described}
    publication.rows = con.execute(f"SELECT count(*) FROM {data}").fetchall()[0][0]
    names = list(publication.columns)
    if "schema" not in {o.check for o in publication.outcomes} and any(
        c.type for c in spec.columns
    ):
        publication.outcomes.append(check_schema(spec, names, list(publication.columns.values())))
    publication.outcomes += row_audits(con, spec, data, publication.rows)
    publication.outcomes += run_quality_rules(
        con, spec.ref, contract, data, publication.rows, names, spec.personal, metrics
    )
    if publication.blocked:
        return publication
    record = {
        "rows": publication.rows,
        "columns": column_types or publication.columns,
        "inputs": publication.inputs,
        **(extra or {}),
        "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Read from staging (the owner's raw rows): the step's DuckDB may touch
    # nothing of the port once published (dagmesh.engine.grants).
    publication.preview = preview_rows(con, staging / DATA_FILE, spec.personal)
    publication.version = publish_staged(con, mesh, staging, run_id, record, spec, contract)
    port = mesh.port(spec.domain, spec.name)
    publication.port_file = port.port_file()
    return publication


def preview_rows(
    con: duckdb.DuckDBPyConnection, data_file: Path | str, personal: Collection[str]
) -> list[dict[str, str]]:
    """The first rows of a published file as text, the ``personal`` columns masked."""
    rel = con.sql(f"SELECT * FROM read_parquet({literal(data_file)}) LIMIT {PREVIEW_ROWS}")
    shown = rel.select(masked_select(rel.columns, personal))
    return [
        {c: "NULL" if v is None else v for c, v in zip(shown.columns, row, strict=True)}
        for row in shown.fetchall()
    ]


def contract_text(contract: Contract) -> str:
    """The contract as published with a version (ODCS YAML)."""
    document = contract.model_dump(by_alias=True, exclude_none=True)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def publish_staged(
    con: duckdb.DuckDBPyConnection,
    mesh: MeshStore,
    staging: Path,
    run_id: str,
    record: dict[str, Any],
    spec: ProductSpec,
    contract: Contract | None,
) -> str:
    """Publish ``staging/data.parquet`` (raw, audited) as the new version of
    ``spec``'s port; returns the version id.

    With PII columns, the raw file becomes ``raw.parquet`` (owner only) and
    ``data.parquet`` is rewritten masked (hashed with the mesh's key). Versions
    older than the contract's retention SLA are deleted (never the current).
    The publish is recorded in the audit log before the version becomes
    current; AuditRecordError (nothing published) when it cannot be.
    """
    port = mesh.port(spec.domain, spec.name)
    masked: dict[str, str] = {}
    if spec.masking:
        raw = staging / RAW_FILE
        (staging / DATA_FILE).rename(raw)
        types = record.get("columns") or {c.name: c.type for c in spec.columns}
        key = mesh.masking_key()
        masked = write_masked(con, raw, staging / DATA_FILE, list(types.items()), spec.masking, key)
    if contract is not None:
        (staging / CONTRACT_FILE).write_text(contract_text(contract))
    record = {
        **record,
        "access": spec.access,
        "consumers": sorted(spec.consumers),
        "masked_columns": masked,
        "contract_version": contract.version if contract else None,
    }
    retention = contract.retention if contract else None
    record_publish = _publish_recorder(mesh, port, run_id, record)
    return port.publish(
        staging,
        run_id,
        record,
        keep=mesh.keep_versions,
        max_age=retention,
        record_publish=record_publish,
    )


def _publish_recorder(
    mesh: MeshStore, port: Any, run_id: str, record: dict[str, Any]
) -> Callable[[str], None]:
    """What the port calls before a version becomes current: a publish that
    cannot be recorded in the audit log does not happen (the port keeps its
    last good version)."""

    def record_publish(version: str) -> None:
        try:
            audit_log.record_publish(
                mesh.home_path,
                run_id=run_id,
                product=port.ref,
                version=version,
                rows=record["rows"],
                contract_version=record["contract_version"],
            )
        except OSError as error:
            current = port.current()
            kept = f"version {current.version} stays current" if current else "nothing is current"
            raise AuditRecordError(
                f"{port.ref}: the publish of version {version} could not be recorded in the "
                f"audit log {audit_log.audit_dir(mesh.home_path)} ({error.strerror or error}); "
                f"it was not published and {kept}. Fix the audit directory and re-run."
            ) from error

    return record_publish
