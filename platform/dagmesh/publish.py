"""The publish step shared by Python and dbt products: mask personal data
for other domains, keep the contract with the version, publish atomically,
record the publish in the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import yaml

from dagmesh import audit_log
from dagmesh.contracts.model import Contract
from dagmesh.masking import write_masked
from dagmesh.spec import ProductSpec
from dagmesh.storage import CONTRACT_FILE, DATA_FILE, RAW_FILE, MeshStore


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
    version = port.publish(staging, run_id, record, keep=mesh.keep_versions, max_age=retention)
    audit_log.record_publish(
        mesh.home_path,
        run_id=run_id,
        product=port.ref,
        version=version,
        rows=record["rows"],
        contract_version=record["contract_version"],
    )
    return version
