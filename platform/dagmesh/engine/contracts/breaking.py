"""Breaking-change detection between two versions of a data contract.

Contracts are Open Data Contract Standard (ODCS) v3 documents, given as plain
mappings (parsed YAML). The columns compared are the ``properties`` of the
first object in ``schema``, matched by ``name``. A change is breaking when a
consumer written against the published contract could fail or silently
receive data it was promised not to get:

* ``column_removed`` -- a published column is gone (a rename is a removal
  plus an addition, so the old name is reported as removed);
* ``type_narrowed`` -- the column's type changed to one that is not a safe
  widening of the published one (see :func:`_is_widening`);
* ``made_required`` -- an optional column became ``required: true``;
* ``classification_loosened`` -- the column's classification became less
  sensitive (e.g. ``pii`` to ``internal``).

Adding columns, tightening a classification and editing descriptions are not
breaking. :func:`requires_major_bump` lets breaking changes through when the
proposed contract raises the major version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BreakingChange", "breaking_changes", "major", "requires_major_bump"]

COLUMN_REMOVED = "column_removed"
TYPE_NARROWED = "type_narrowed"
MADE_REQUIRED = "made_required"
CLASSIFICATION_LOOSENED = "classification_loosened"


@dataclass(frozen=True)
class BreakingChange:
    """One breaking difference between a published and a proposed contract."""

    column: str
    rule: str
    message: str


# --------------------------------------------------------------------------- #
# Types
# --------------------------------------------------------------------------- #

# DuckDB type aliases, keyed by the normalised (upper-case, single-spaced) name.
_TYPE_ALIASES: dict[str, str] = {
    "INT1": "TINYINT",
    "INT2": "SMALLINT",
    "SHORT": "SMALLINT",
    "INT": "INTEGER",
    "INT4": "INTEGER",
    "SIGNED": "INTEGER",
    "INT8": "BIGINT",
    "LONG": "BIGINT",
    "INT128": "HUGEINT",
    "VARCHAR": "VARCHAR",
    "TEXT": "VARCHAR",
    "STRING": "VARCHAR",
    "CHAR": "VARCHAR",
    "BPCHAR": "VARCHAR",
    "DOUBLE": "DOUBLE",
    "FLOAT8": "DOUBLE",
    "DOUBLE PRECISION": "DOUBLE",
    "REAL": "REAL",
    "FLOAT4": "REAL",
    "FLOAT": "REAL",
    "NUMERIC": "DECIMAL",
    "DATETIME": "TIMESTAMP",
    "TIMESTAMP WITHOUT TIME ZONE": "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ",
    "BOOL": "BOOLEAN",
    "LOGICAL": "BOOLEAN",
}

# Integer types: (signed, bits).
_INTEGERS: dict[str, tuple[bool, int]] = {
    "TINYINT": (True, 8),
    "SMALLINT": (True, 16),
    "INTEGER": (True, 32),
    "BIGINT": (True, 64),
    "HUGEINT": (True, 128),
    "UTINYINT": (False, 8),
    "USMALLINT": (False, 16),
    "UINTEGER": (False, 32),
    "UBIGINT": (False, 64),
    "UHUGEINT": (False, 128),
}

# Decimal digits needed to hold every value of each integer type.
_INTEGER_DIGITS: dict[str, int] = {
    "TINYINT": 3,
    "SMALLINT": 5,
    "INTEGER": 10,
    "BIGINT": 19,
    "HUGEINT": 39,
    "UTINYINT": 3,
    "USMALLINT": 5,
    "UINTEGER": 10,
    "UBIGINT": 20,
    "UHUGEINT": 39,
}

# DuckDB's DECIMAL without arguments is DECIMAL(18,3).
_DEFAULT_DECIMAL = (18, 3)

# ODCS logical types: the only safe widening is integer -> number.
_LOGICAL_WIDENINGS = {("integer", "number")}

_DECIMAL_RE = re.compile(r"^DECIMAL(?:\((\d+)(?:,(\d+))?\))?$")
# Type parameters DuckDB accepts but ignores, e.g. VARCHAR(255).
_IGNORED_PARAMS_RE = re.compile(r"^(VARCHAR|TEXT|STRING|CHAR|BPCHAR)\(\d+\)$")


@dataclass(frozen=True)
class _Type:
    """A normalised column type: ``kind`` is ``physical`` or ``logical``."""

    kind: str
    name: str
    decimal: tuple[int, int] | None = None


def _normalise_physical(raw: str) -> _Type:
    """Normalise a DuckDB type name: case, spacing, aliases, decimal parameters."""
    text = re.sub(r"\s+", " ", raw.strip().upper())
    text = re.sub(r"\s*([(),\[\]])\s*", r"\1", text)
    suffix = ""
    while text.endswith("[]"):  # lists: normalise the element type only
        text, suffix = text[:-2], suffix + "[]"
    if _IGNORED_PARAMS_RE.match(text):
        text = text[: text.index("(")]
    if "(" in text:
        head, _, rest = text.partition("(")
        text = f"{_TYPE_ALIASES.get(head, head)}({rest}"
    else:
        text = _TYPE_ALIASES.get(text, text)
    if not suffix:
        match = _DECIMAL_RE.match(text)
        if match:
            if match.group(1) is None:
                precision, scale = _DEFAULT_DECIMAL
            else:
                precision, scale = int(match.group(1)), int(match.group(2) or 0)
            return _Type("physical", f"DECIMAL({precision},{scale})", (precision, scale))
    return _Type("physical", text + suffix)


def _is_widening(old: _Type, new: _Type) -> bool:
    """Whether every value of ``old`` is representable in ``new`` (a non-breaking change)."""
    if old == new:
        return True
    if old.kind == "logical" or new.kind == "logical":
        return old.kind == new.kind and (old.name, new.name) in _LOGICAL_WIDENINGS
    if old.name in _INTEGERS:
        old_signed, old_bits = _INTEGERS[old.name]
        if new.name in _INTEGERS:
            new_signed, new_bits = _INTEGERS[new.name]
            if old_signed == new_signed:
                return new_bits >= old_bits
            # Unsigned fits in a strictly wider signed; signed never fits unsigned.
            return new_signed and new_bits > old_bits
        if new.decimal is not None:
            precision, scale = new.decimal
            return precision - scale >= _INTEGER_DIGITS[old.name]
        return new.name == "DOUBLE"
    if old.name == "REAL":
        return new.name == "DOUBLE"
    if old.decimal is not None and new.decimal is not None:
        (p, s), (p2, s2) = old.decimal, new.decimal
        return s2 >= s and p2 - s2 >= p - s
    # Everything else, including any type -> VARCHAR and DATE -> TIMESTAMP,
    # is a change of type and therefore breaking.
    return False


def _column_types(
    published: Mapping[str, Any], proposed: Mapping[str, Any]
) -> tuple[_Type | None, _Type | None, str | None, str | None]:
    """The comparable types of a column on both sides, with their raw spellings.

    ``physicalType`` is used when both sides declare it; otherwise both fall
    back to ``logicalType``.
    """
    old_phys, new_phys = published.get("physicalType"), proposed.get("physicalType")
    if old_phys and new_phys:
        old_raw, new_raw = str(old_phys).strip(), str(new_phys).strip()
        return _normalise_physical(old_raw), _normalise_physical(new_raw), old_raw, new_raw
    old_log, new_log = published.get("logicalType"), proposed.get("logicalType")
    old_raw = str(old_log).strip() if old_log else None
    new_raw = str(new_log).strip() if new_log else None
    old_type = _Type("logical", old_raw.lower()) if old_raw else None
    new_type = _Type("logical", new_raw.lower()) if new_raw else None
    return old_type, new_type, old_raw, new_raw


def _type_change(
    name: str, published: Mapping[str, Any], proposed: Mapping[str, Any]
) -> BreakingChange | None:
    """The ``type_narrowed`` change for one column, or ``None``."""
    old, new, old_raw, new_raw = _column_types(published, proposed)
    if old is None:
        return None  # nothing was promised, so nothing can be broken
    if new is None:
        return BreakingChange(
            name,
            TYPE_NARROWED,
            f"column {name!r} type changed from {old_raw} to unspecified "
            "(the proposed contract no longer declares a type)",
        )
    if _is_widening(old, new):
        return None
    verb = "narrowed" if _is_widening(new, old) else "changed"
    return BreakingChange(
        name, TYPE_NARROWED, f"column {name!r} type {verb} from {old_raw} to {new_raw}"
    )


# --------------------------------------------------------------------------- #
# Required and classification
# --------------------------------------------------------------------------- #


def _is_true(value: Any) -> bool:
    """ODCS booleans, tolerating the string spellings YAML authors sometimes use."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


# Sensitivity order: pii > confidential = pseudonymous > internal > public.
_SENSITIVITY: dict[str, int] = {
    "public": 0,
    "internal": 1,
    "confidential": 2,
    "pseudonymous": 2,
    "pii": 3,
}
# A column without a classification counts as "internal", the ODCS-style default
# for data shared inside the organisation.
_ABSENT_CLASSIFICATION = "internal"
# An unrecognised label is treated as "confidential": conservative, so moving from
# an unknown label to "internal"/"public" is flagged, and to "pii" is not.
_UNKNOWN_CLASSIFICATION = "confidential"


def _classification(prop: Mapping[str, Any]) -> tuple[int, str]:
    """The sensitivity rank of a column and how to describe its label in a message."""
    raw = prop.get("classification")
    if raw is None or str(raw).strip() == "":
        return _SENSITIVITY[_ABSENT_CLASSIFICATION], f"absent (treated as {_ABSENT_CLASSIFICATION})"
    label = str(raw).strip()
    rank = _SENSITIVITY.get(label.lower())
    if rank is None:
        return (
            _SENSITIVITY[_UNKNOWN_CLASSIFICATION],
            f"{label} (unknown, treated as {_UNKNOWN_CLASSIFICATION})",
        )
    return rank, label


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def _properties(contract: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The properties of the contract's first schema object, by column name."""
    schema = contract.get("schema") or []
    if not schema:
        return {}
    columns: dict[str, Mapping[str, Any]] = {}
    for prop in schema[0].get("properties") or []:
        name = prop.get("name")
        if name is not None:
            columns.setdefault(str(name), prop)
    return columns


def breaking_changes(
    published: Mapping[str, Any], proposed: Mapping[str, Any]
) -> list[BreakingChange]:
    """List the changes in ``proposed`` that break consumers of ``published``.

    Columns are the ``properties`` of each contract's first ``schema`` object,
    matched by name, reported in the published contract's column order. New
    columns (optional or required) are never breaking.

    Args:
        published: The contract consumers currently rely on.
        proposed: The contract about to replace it.

    Returns:
        One :class:`BreakingChange` per broken rule per column; empty when the
        proposed contract is backwards compatible.
    """
    old_columns, new_columns = _properties(published), _properties(proposed)
    added = [name for name in new_columns if name not in old_columns]
    changes: list[BreakingChange] = []
    for name, old in old_columns.items():
        new = new_columns.get(name)
        if new is None:
            hint = f"; new columns: {', '.join(map(repr, added))}" if added else ""
            changes.append(
                BreakingChange(
                    name,
                    COLUMN_REMOVED,
                    f"column {name!r} removed (a rename counts as a removal of the old "
                    f"name plus an addition of the new one){hint}",
                )
            )
            continue
        type_change = _type_change(name, old, new)
        if type_change is not None:
            changes.append(type_change)
        if not _is_true(old.get("required")) and _is_true(new.get("required")):
            before = "false" if "required" in old else "absent (optional)"
            changes.append(
                BreakingChange(
                    name,
                    MADE_REQUIRED,
                    f"column {name!r} made required (required: {before} -> true)",
                )
            )
        old_rank, old_label = _classification(old)
        new_rank, new_label = _classification(new)
        if new_rank < old_rank:
            changes.append(
                BreakingChange(
                    name,
                    CLASSIFICATION_LOOSENED,
                    f"column {name!r} classification loosened from {old_label} to {new_label}",
                )
            )
    return changes


_SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


def major(version: str) -> int:
    """The major component of a semantic version: ``"1.2.0"`` gives ``1``.

    Raises:
        ValueError: If ``version`` is not a semantic version ``MAJOR.MINOR.PATCH``
            (optionally with ``-prerelease`` and ``+build``).
    """
    match = _SEMVER_RE.match(version) if isinstance(version, str) else None
    if match is None:
        raise ValueError(
            f"contract version {version!r} is not a semantic version "
            "(expected MAJOR.MINOR.PATCH, e.g. '1.2.0')"
        )
    return int(match.group(1))


def requires_major_bump(
    published: Mapping[str, Any], proposed: Mapping[str, Any]
) -> list[BreakingChange]:
    """The breaking changes that block ``proposed`` unless it raises the major version.

    Both contracts' ``version`` fields are validated first, whatever the changes.

    Returns:
        The result of :func:`breaking_changes`, or ``[]`` when there are none or
        when the proposed major version is greater than the published one.

    Raises:
        ValueError: If either contract's ``version`` is not a semantic version.
    """
    published_major = major(published.get("version"))  # type: ignore[arg-type]
    proposed_major = major(proposed.get("version"))  # type: ignore[arg-type]
    if proposed_major > published_major:
        return []
    return breaking_changes(published, proposed)
