"""Data contracts in the Open Data Contract Standard v3 (ODCS), the subset
dagmesh reads and writes.

Field names are ODCS's own (``dataProduct``, ``slaProperties``,
``logicalType``...), so a contract file is a valid ODCS document that other
tools can read; fields dagmesh does not use are kept as they are.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

API_VERSION = "v3.0.2"
SEVERITIES = ("error", "warning", "info")
LIBRARY_RULES = ("rowCount", "validValues", "nullCheck", "duplicateCount", "metric")
MODEL_METRICS = {
    "roc_auc": "area under the ROC curve on the holdout (0.5 = chance)",
    "average_precision": "average precision on the holdout",
    "brier_score": "mean squared error of the probabilities on the holdout (lower is better)",
    "baseline_brier_score": "Brier score of always predicting the training positive rate",
    "brier_skill": "1 - brier_score / baseline_brier_score (0 = no better than the base rate)",
    "log_loss": "log loss on the holdout (lower is better)",
    "accuracy": "share of holdout rows classified right at probability 0.5",
    "training_rows": "rows the model was trained on",
    "holdout_rows": "rows of the holdout (the latest by time)",
}
"""What a model product measures on its holdout; a contract's ``metric``
quality rules bound them (``{rule: metric, metric: roc_auc, mustBeGreaterThan: 0.7}``)."""
BOUNDS = (
    "mustBe",
    "mustNotBe",
    "mustBeGreaterThan",
    "mustBeGreaterOrEqualTo",
    "mustBeLessThan",
    "mustBeLessOrEqualTo",
    "mustBeBetween",
    "mustNotBeBetween",
)


class _Odcs(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class QualityRule(_Odcs):
    """An ODCS quality rule: ``library`` (rowCount, validValues, nullCheck,
    duplicateCount, and ``metric`` for model products: a metric of the
    holdout evaluation, named by ``metric``) or ``sql`` (a query over ``${object}`` returning one
    number), compared with ``mustBe...``. ``severity: error`` blocks
    publication; ``warning`` is reported and publishes."""

    type: Literal["library", "sql", "text", "custom"] = "library"
    rule: str | None = None
    name: str | None = None
    description: str | None = None
    severity: Literal["error", "warning", "info"] = "error"
    query: str | None = None
    metric: str | None = None
    validValues: list[Any] | None = None
    mustBe: float | None = None
    mustNotBe: float | None = None
    mustBeGreaterThan: float | None = None
    mustBeGreaterOrEqualTo: float | None = None
    mustBeLessThan: float | None = None
    mustBeLessOrEqualTo: float | None = None
    mustBeBetween: list[float] | None = None
    mustNotBeBetween: list[float] | None = None

    @property
    def blocking(self) -> bool:
        """True when a failure stops publication."""
        return self.severity == "error"


class SchemaProperty(_Odcs):
    """One column."""

    name: str
    logicalType: str | None = None
    physicalType: str | None = None
    required: bool = False
    unique: bool = False
    primaryKey: bool = False
    primaryKeyPosition: int | None = None
    classification: str | None = None
    description: str | None = None
    quality: list[QualityRule] = Field(default_factory=list)


class SchemaObject(_Odcs):
    """The product's table."""

    name: str
    physicalType: str = "table"
    description: str | None = None
    properties: list[SchemaProperty] = Field(default_factory=list)
    quality: list[QualityRule] = Field(default_factory=list)


class SlaProperty(_Odcs):
    """A service level: ``latency`` (freshness) or ``retention``."""

    property: str
    value: float | int | str
    unit: str | None = None
    element: str | None = None


class TeamMember(_Odcs):
    """A member of the owning team; ``role: owner`` names the owner team."""

    name: str | None = None
    username: str | None = None
    role: str | None = None


class CustomProperty(_Odcs):
    """An extension: dagmesh keeps access, consumers and deprecation here."""

    property: str
    value: Any = None


class Description(_Odcs):
    """What the product is for and how to use it."""

    purpose: str | None = None
    usage: str | None = None
    limitations: str | None = None


class Contract(_Odcs):
    """An ODCS v3 data contract of one product."""

    apiVersion: str = API_VERSION
    kind: str = "DataContract"
    id: str
    name: str | None = None
    version: str = "1.0.0"
    status: str = "active"
    domain: str
    dataProduct: str
    description: Description = Field(default_factory=Description)
    team: list[TeamMember] = Field(default_factory=list)
    schema_: list[SchemaObject] = Field(default_factory=list, alias="schema")
    slaProperties: list[SlaProperty] = Field(default_factory=list)
    customProperties: list[CustomProperty] = Field(default_factory=list)

    @property
    def table(self) -> SchemaObject | None:
        """The product's schema object."""
        return self.schema_[0] if self.schema_ else None

    def custom(self, name: str) -> Any:
        """A custom property's value, or None."""
        return next((p.value for p in self.customProperties if p.property == name), None)

    def sla(self, name: str) -> SlaProperty | None:
        """An SLA property (``latency``, ``retention``), or None."""
        return next((s for s in self.slaProperties if s.property == name), None)

    @property
    def freshness(self) -> dt.timedelta | None:
        """The latency SLA as a duration: how old the product may get."""
        return _duration(self.sla("latency"))

    @property
    def retention(self) -> dt.timedelta | None:
        """The retention SLA as a duration: how long published versions are kept."""
        return _duration(self.sla("retention"))

    @property
    def deprecation(self) -> tuple[str, str | None] | None:
        """(sunset date, replacement) when the contract is deprecated."""
        if self.status != "deprecated":
            return None
        return str(self.custom("sunsetDate") or "no sunset date"), self.custom("replacedBy")

    def quality_rules(self) -> list[tuple[str | None, QualityRule]]:
        """Every quality rule with the column it is attached to (None: the table)."""
        table = self.table
        if table is None:
            return []
        rules: list[tuple[str | None, QualityRule]] = [(None, r) for r in table.quality]
        for prop in table.properties:
            rules += [(prop.name, r) for r in prop.quality]
        return rules


UNITS = {
    "m": "minutes",
    "min": "minutes",
    "minute": "minutes",
    "minutes": "minutes",
    "h": "hours",
    "hour": "hours",
    "hours": "hours",
    "d": "days",
    "day": "days",
    "days": "days",
    "w": "weeks",
    "week": "weeks",
    "weeks": "weeks",
    "y": "years",
    "year": "years",
    "years": "years",
}


def _duration(sla: SlaProperty | None) -> dt.timedelta | None:
    if sla is None:
        return None
    unit = UNITS.get(str(sla.unit or "d").lower())
    if unit is None:
        raise ValueError(f"SLA {sla.property}: unknown unit {sla.unit!r} (use m, h, d, w or y)")
    value = float(sla.value)
    if unit == "years":
        return dt.timedelta(days=365 * value)
    return dt.timedelta(**{unit: value})
