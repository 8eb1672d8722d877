"""Contract files beside the domain's code, kept in step with its declarations.

A contract file ``domains/<domain>/contracts/<product>.odcs.yaml`` holds two
kinds of facts:

- *generated*: what the Python declaration or the dbt yml already says (id,
  description, owner team, columns with types, required, unique, primary
  key, classification, access). ``dagmesh contracts sync`` writes them;
  ``dagmesh lint`` fails when the file disagrees with the declaration.
- *written by the owner*: version, status, quality rules, SLAs, deprecation.
  Sync keeps them as they are.

So no fact is written twice by hand. At run time the platform uses the
declaration's facts and the file's own ones (:func:`effective_contract`).

A dbt yml often leaves out ``data_type`` and lists only some columns; the
built relation knows them. ``sync`` takes those from the product's current
published version (its record's column types): the types the yml leaves
out, and the columns it does not list (marked ``undocumented``). Where no
version is published, or when ``lint`` compares, the types and undocumented
columns the file already records are kept, so a contract synced after a
build does not fail ``lint`` in a checkout that has never built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dagmesh import config
from dagmesh.declarations.contract import API_VERSION, Contract
from dagmesh.declarations.product import Domain
from dagmesh.declarations.spec import ColumnSpec, ProductSpec
from dagmesh.engine.specs import domain_specs
from dagmesh.engine.storage import OutputPort
from dagmesh.errors import DagmeshError

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

SUFFIX = ".odcs.yaml"
HEADER = (
    "# Data contract (Open Data Contract Standard v3) of {ref}.\n"
    "# id, description.purpose, team, schema properties (types, required, unique,\n"
    "# primaryKey, classification, description) and the access properties are\n"
    "# generated from the product's declaration by `dagmesh contracts sync`; edit the\n"
    "# declaration, not them. version, status, quality rules and slaProperties are\n"
    "# the owner's: edit them here.\n"
)
GENERATED_PROPERTY_KEYS = (
    "name",
    "logicalType",
    "physicalType",
    "required",
    "unique",
    "primaryKey",
    "primaryKeyPosition",
    "classification",
    "description",
)
GENERATED_CUSTOM = ("access", "consumers")
UNDOCUMENTED = "undocumented"
"""The custom property marking a column the dbt yml does not list, which
the contract records from the built relation."""

_LOGICAL = [
    (r"(TINY|SMALL|BIG|HUGE|U?)INT|INTEGER|UBIGINT|USMALLINT|UTINYINT|UINTEGER", "integer"),
    (r"DECIMAL|NUMERIC|DOUBLE|FLOAT|REAL", "number"),
    (r"BOOL", "boolean"),
    (r"DATE|TIMESTAMP|TIME", "date"),
    (r"STRUCT|MAP", "object"),
    (r".*\[\]|LIST|ARRAY", "array"),
]


class ContractError(DagmeshError, ValueError):
    """A contract file cannot be read."""


def logical_type(physical: str) -> str:
    """The ODCS logical type of a DuckDB type."""
    upper = physical.strip().upper()
    for pattern, logical in _LOGICAL:
        if re.match(pattern, upper):
            return logical
    return "string"


def contract_path(domain: Domain, product: str) -> Path:
    """Where the contract of ``domain/product`` lives."""
    return domain.contracts_dir / f"{product}{SUFFIX}"


def _property(spec: ProductSpec, column: ColumnSpec, built: Mapping[str, str]) -> dict[str, Any]:
    kind = column.type or built.get(column.name, "")
    prop: dict[str, Any] = {
        "name": column.name,
        "logicalType": logical_type(kind) if kind else None,
        "physicalType": kind.upper() if kind else None,
        "required": column.required,
        "unique": column.unique,
        "primaryKey": column.name in spec.primary_key,
        "primaryKeyPosition": (
            spec.primary_key.index(column.name) + 1 if column.name in spec.primary_key else None
        ),
        "classification": column.classification,
        "description": column.description or None,
    }
    return {k: v for k, v in prop.items() if v is not None}


def _properties(spec: ProductSpec, built: Mapping[str, str]) -> list[dict[str, Any]]:
    """The declared columns, typed from ``built`` where the declaration has
    no type; then (dbt) the built columns the declaration does not list."""
    props = [_property(spec, c, built) for c in spec.columns]
    if spec.kind == "dbt":
        declared = {c.name for c in spec.columns}
        props += [
            {
                **_property(spec, ColumnSpec(name, kind), {}),
                "customProperties": [{"property": UNDOCUMENTED, "value": True}],
            }
            for name, kind in built.items()
            if name not in declared
        ]
    return props


def built_columns(spec: ProductSpec, home: Path | None = None) -> dict[str, str] | None:
    """The column types of a dbt product's current published version (what
    its build made), or None when it is not a dbt product or has none."""
    if spec.kind != "dbt":
        return None
    port = OutputPort(home or config.mesh_home(), spec.domain, spec.name)
    try:
        current = port.current()
        columns = current.info().get("columns") if current else None
    except (OSError, ValueError):  # a broken port: lint and the catalog report it
        return None
    return {str(k): str(v) for k, v in columns.items()} if isinstance(columns, dict) else None


def _recorded_columns(existing: Mapping[str, Any] | None, spec: ProductSpec) -> dict[str, str]:
    """The types a contract file records for what a dbt declaration leaves
    out: declared columns without a type, and undocumented columns."""
    if spec.kind != "dbt" or not existing:
        return {}
    untyped = {c.name for c in spec.columns if not c.type}
    recorded = {}
    for prop in (existing.get("schema") or [{}])[0].get("properties") or []:
        if not isinstance(prop, dict) or not prop.get("physicalType"):
            continue
        marked = any(
            isinstance(c, dict) and c.get("property") == UNDOCUMENTED
            for c in prop.get("customProperties") or []
        )
        if prop.get("name") in untyped or marked:
            recorded[str(prop["name"])] = str(prop["physicalType"])
    return recorded


def generated_facts(spec: ProductSpec, built: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the declaration says, in ODCS fields; a dbt product's columns
    completed by ``built`` (column → type of the built relation)."""
    custom = [{"property": "access", "value": spec.access}]
    if spec.consumers:
        custom.append({"property": "consumers", "value": sorted(spec.consumers)})
    return {
        "id": f"{spec.domain}.{spec.name}",
        "name": spec.name,
        "domain": spec.domain,
        "dataProduct": spec.name,
        # A dbt seed often has no description: then the contract is where the
        # owner writes it, and it is kept.
        "description": {"purpose": spec.description} if spec.description else {},
        "team": [{"name": spec.owner, "role": "owner"}],
        "schema": [
            {
                "name": spec.name,
                "physicalType": "table",
                "description": spec.description or None,
                "properties": _properties(spec, built or {}),
            }
        ],
        "customProperties": custom,
    }


def _merged_property(prop: dict[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """A generated property with the owner's own keys of the old one kept
    (the ``undocumented`` mark is generated, not kept)."""
    kept = {k: v for k, v in old.items() if k not in GENERATED_PROPERTY_KEYS}
    custom = [
        c
        for c in kept.pop("customProperties", None) or []
        if not (isinstance(c, dict) and c.get("property") == UNDOCUMENTED)
    ]
    custom += prop.get("customProperties", [])
    merged = {**{k: v for k, v in prop.items() if k != "customProperties"}, **kept}
    if custom:
        merged["customProperties"] = custom
    return merged


def read_file(path: Path) -> dict[str, Any] | None:
    """The raw contract document at ``path``, or None if there is none."""
    if not path.is_file():
        return None
    try:
        # libyaml's loader when built in: ~10x faster on a mesh of 2,000 contracts.
        document = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except yaml.YAMLError as error:
        raise ContractError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(document, dict):
        raise ContractError(f"{path}: a contract is a YAML mapping")
    return document


def merge(
    existing: dict[str, Any] | None,
    spec: ProductSpec,
    built: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``existing`` with its generated facts replaced by the declaration's;
    the owner's facts (version, status, quality, SLAs, other properties) kept.
    ``built``: the column types of the built relation (:func:`built_columns`);
    None keeps those the file records."""
    old = dict(existing or {})
    facts = generated_facts(spec, _recorded_columns(existing, spec) if built is None else built)
    document: dict[str, Any] = {
        "apiVersion": old.get("apiVersion", API_VERSION),
        "kind": "DataContract",
        "id": facts["id"],
        "name": facts["name"],
        "version": old.get("version", "1.0.0"),
        "status": old.get("status", "active"),
        "domain": facts["domain"],
        "dataProduct": facts["dataProduct"],
        "description": {**(old.get("description") or {}), **facts["description"]},
        "team": facts["team"],
    }
    old_table = (old.get("schema") or [{}])[0]
    old_props = {p.get("name"): p for p in old_table.get("properties", []) if isinstance(p, dict)}
    table = {**{k: v for k, v in old_table.items() if k != "properties"}}
    table.update(
        {k: v for k, v in facts["schema"][0].items() if k != "properties" and v is not None}
    )
    table["properties"] = [
        _merged_property(prop, old_props.get(prop["name"], {}))
        for prop in facts["schema"][0]["properties"]
    ]
    document["schema"] = [table]
    for key, value in old.items():
        if key not in document and key != "customProperties":
            document[key] = value
    kept = [
        p for p in old.get("customProperties") or [] if p.get("property") not in GENERATED_CUSTOM
    ]
    document["customProperties"] = facts["customProperties"] + kept
    return document


def drift(existing: dict[str, Any], spec: ProductSpec) -> list[str]:
    """Where the contract file disagrees with the declaration, one line each."""
    expected = merge(existing, spec)
    differences = []
    for key in ("id", "domain", "dataProduct", "team"):
        if existing.get(key) != expected[key]:
            differences.append(
                f"{key} is {existing.get(key)!r}, the declaration says {expected[key]!r}"
            )
    purpose = (existing.get("description") or {}).get("purpose")
    if spec.description and purpose != spec.description:
        differences.append("description.purpose differs from the declaration's description")
    old_props = {
        p.get("name"): p for p in ((existing.get("schema") or [{}])[0].get("properties") or [])
    }
    new_props = {p["name"]: p for p in expected["schema"][0]["properties"]}
    for name in old_props.keys() - new_props.keys():
        differences.append(f"column {name!r} is in the contract but not declared")
    for name, prop in new_props.items():
        if name not in old_props:
            differences.append(f"column {name!r} is declared but not in the contract")
            continue
        for key in GENERATED_PROPERTY_KEYS:
            if old_props[name].get(key) != prop.get(key):
                differences.append(
                    f"column {name!r} {key} is {old_props[name].get(key)!r} in the contract, "
                    f"{prop.get(key)!r} in the declaration"
                )
    old_custom = {p.get("property"): p.get("value") for p in existing.get("customProperties") or []}
    for prop in generated_facts(spec)["customProperties"]:
        if old_custom.get(prop["property"]) != prop["value"]:
            differences.append(
                f"{prop['property']} is {old_custom.get(prop['property'])!r} in the contract, "
                f"{prop['value']!r} in the declaration"
            )
    return differences


def parse(document: dict[str, Any], where: str) -> Contract:
    """Validate a contract document; ContractError naming the file and field."""
    try:
        return Contract.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise ContractError(f"{where}: invalid contract: {problems}") from error


def effective_contract(domain: Domain, spec: ProductSpec) -> Contract | None:
    """The contract the platform enforces: the file's own facts with the
    declaration's generated ones; None when the product has no contract file."""
    path = contract_path(domain, spec.name)
    existing = read_file(path)
    if existing is None:
        return None
    return parse(merge(existing, spec), str(path))


def dump(document: dict[str, Any], ref: str) -> str:
    """The YAML text of a contract file."""
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=88)
    return HEADER.format(ref=ref) + body


def sync(domain: Domain) -> list[Path]:
    """Write the generated facts of every product of ``domain`` into its
    contract file (created when missing), a dbt product's columns typed and
    completed from its current published version. Returns the files that
    changed."""
    changed = []
    for name, spec in domain_specs(domain).items():
        path = contract_path(domain, name)
        existing = read_file(path)
        text = dump(merge(existing, spec, built_columns(spec)), spec.ref)
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    return changed
