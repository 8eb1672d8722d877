"""What a product's Dagster step reports, for every kind of product: its
column schema, the check results of its audits, the metadata of a
publication, and the alert of a blocked one."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from dagmesh.declarations.spec import ProductSpec
from dagmesh.engine.checks import AuditOutcome
from dagmesh.engine.publish import Publication
from dagmesh.orchestration.alerts import Alert, send_alert


def column_schema(spec: ProductSpec, published: Mapping[str, str] | None = None) -> dg.TableSchema:
    """``dagster/column_schema`` of a product: its declared columns, or the
    ``published`` ones (name -> type, as written) described by the declaration."""
    declared = {c.name: c for c in spec.columns}
    names = list(published) if published is not None else list(declared)
    columns = []
    for name in names:
        column = declared.get(name)
        kind = (published or {}).get(name) or (column.type if column else "") or "unknown"
        classification = column.classification if column else None
        columns.append(
            dg.TableColumn(
                name=name,
                type=kind,
                description=(column.description if column else "") or None,
                constraints=dg.TableColumnConstraints(
                    nullable=not (column and column.required),
                    unique=bool(column and column.unique),
                ),
                tags={"classification": classification} if classification else None,
            )
        )
    return dg.TableSchema(columns=columns)


def check_result(key: dg.AssetKey, outcome: AuditOutcome) -> dg.AssetCheckResult:
    """An audit outcome as the Dagster check result of ``key`` (WARN when
    the rule does not block publication)."""
    return dg.AssetCheckResult(
        check_name=outcome.check,
        asset_key=key,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
        description="; ".join(outcome.violations) or outcome.description,
        metadata=outcome.metadata,
    )


def preview_table(rows: list[dict[str, str]]) -> dg.TableMetadataValue:
    """Preview rows (personal data masked) as a Dagster table."""
    columns = list(rows[0]) if rows else []
    return dg.MetadataValue.table(
        records=[dg.TableRecord(row) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]),
    )


def publication_metadata(publication: Publication) -> dict[str, object]:
    """The materialization metadata of a published product."""
    metadata: dict[str, object] = {
        "dagster/row_count": publication.rows,
        "dagster/column_schema": column_schema(publication.spec, publication.columns),
        "dagmesh/version": publication.version,
        "dagmesh/port": dg.MetadataValue.path(publication.port_file),
        "dagmesh/inputs": dg.MetadataValue.json(publication.inputs),
    }
    if publication.preview:
        metadata["preview"] = preview_table(publication.preview)
    return metadata


def alert_blocked(ref: str, message: str, run_id: str) -> None:
    """Send the alert of a publication stopped by a blocking check."""
    send_alert(Alert("check_failure", ref, message, {"run_id": run_id}))
