"""Federated computational governance: the mesh's policies as code.

Global policies hold for every product of every domain; a domain adds its
own with :meth:`dagmesh.Domain.policy` and cannot switch a global one off.
They run when a code location loads (a violation stops the load), in
``dagmesh lint`` (one line per violation, non-zero exit) and in CI.

``dagmesh lint`` also checks what needs the data directory or the contract
files' history: contracts in step with their declarations, and breaking
changes against the contract each product was last published under.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from dagmesh import config
from dagmesh.declarations.contract import Contract
from dagmesh.declarations.product import (
    GLOBAL_POLICY_NAMES,
    IDENTIFIER,
    Domain,
    describe_access,
    landing_escape,
    landing_path_problem,
)
from dagmesh.declarations.spec import ProductSpec
from dagmesh.engine.contracts.breaking import requires_major_bump
from dagmesh.engine.contracts.generate import (
    contract_path,
    drift,
    merge,
)
from dagmesh.engine.contracts.rules import rule_problems
from dagmesh.engine.mesh_view import MeshView
from dagmesh.engine.objectstore import ports_store
from dagmesh.engine.registry import Registry
from dagmesh.errors import DagmeshError

log = logging.getLogger("dagmesh")


class GovernanceError(DagmeshError, ValueError):
    """Products of a code location violate the mesh's policies."""


@dataclass(frozen=True)
class Violation:
    """One product breaking one policy, and how to fix it."""

    product: str
    policy: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.product}: [{self.policy}] {self.message}; fix: {self.fix}"


Check = Callable[[ProductSpec, "Contract | None", MeshView], Iterable[tuple[str, str]]]


def _owner(spec, contract, mesh):
    if not spec.owner.strip():
        yield "has no owner team", "set owner= on the product or its Domain (dbt: a group owner)"


def _description(spec, contract, mesh):
    if not spec.exposed:
        return
    written = contract.description.purpose if contract else None
    if not (spec.description.strip() or (written or "").strip()):
        yield (
            "has no description",
            "describe what the product is (dbt: the model's description, or "
            "description.purpose in its contract)",
        )


def _contract(spec, contract, mesh):
    if spec.ref in mesh.contract_errors:
        yield mesh.contract_errors[spec.ref], "fix the contract file"
    elif contract is None and spec.exposed:
        domain = mesh.domains[spec.domain]
        path = contract_path(domain, spec.name)
        yield (
            f"has no data contract ({path.name} is missing)",
            f"run `dagmesh contracts sync {spec.domain}` and commit {path.name}",
        )
    elif contract is not None:
        for column, rule in contract.quality_rules():
            for problem in rule_problems(column, rule):
                where = f"column {column!r}" if column else "the table"
                yield f"quality rule on {where}: {problem}", "correct the rule in the contract"


def _exposure(spec: ProductSpec) -> str:
    """How a product is exposed, in words: ``public``, or ``read by finance``."""
    if spec.access == "public":
        return "public"
    return "read by " + ", ".join(sorted({c for c in spec.consumers if c != spec.domain}))


def _product_kind(spec: ProductSpec) -> str:
    """``a public product``, or ``a product read by finance``."""
    return "a public product" if spec.access == "public" else f"a product {_exposure(spec)}"


def _columns_documented(spec, contract, mesh):
    if not spec.exposed:
        return
    for column in spec.columns:
        if not column.description.strip():
            yield (
                f"column {column.name!r} of {_product_kind(spec)} has no description",
                "describe the column",
            )
        if not column.classification:
            yield (
                f"column {column.name!r} of {_product_kind(spec)} is not classified",
                "give it a classification (pii(...), or classification= on the product; "
                "dbt: meta.classification)",
            )


def _public_sla(spec, contract, mesh):
    if spec.exposed and contract is not None and contract.freshness is None:
        yield (
            f"is {_exposure(spec)} but its contract has no freshness SLA",
            "add slaProperties: [{property: latency, value: 1, unit: d}] to the contract",
        )


def _public_blocking_check(spec, contract, mesh):
    if not spec.exposed:
        return
    blocking_rules = [r for _, r in (contract.quality_rules() if contract else []) if r.blocking]
    if not spec.blocking_checks and not blocking_rules:
        yield (
            f"is {_exposure(spec)} but has no blocking quality check",
            "declare a primary key or required columns, or add an error-severity quality "
            "rule to the contract (dbt: a test)",
        )


def _access(spec, contract, mesh):
    for ref in spec.consumes:
        producer = mesh.interface(ref)
        if producer is None or producer.readable_by(spec.domain):
            continue
        who = describe_access(producer.domain, producer.access, list(producer.consumers))
        yield (
            f"consumes {ref}, which is {who}",
            f"stop consuming it, or ask {producer.domain} to grant access "
            f"(access='public' or consumers=[{spec.domain!r}])",
        )


def _known_products(spec, contract, mesh):
    for ref in spec.consumes:
        producer = ref.split("/")[0]
        if mesh.knows_domain(producer) and mesh.interface(ref) is None:
            yield (
                f"consumes {ref}, which {producer} does not offer",
                f"fix the name, or add the product to {producer} and run "
                f"`dagmesh register {producer}`",
            )
        elif not mesh.knows_domain(producer) and producer not in mesh.unreadable:
            yield (
                f"consumes {ref}, but domain {producer} is neither in this repository nor "
                "in the mesh registry",
                f"run `dagmesh register {producer}` where its code is",
            )


def _domain_cycles(spec, contract, mesh):
    graph = mesh.domain_graph
    for ref in spec.consumes:
        producer = ref.split("/")[0]
        if producer == spec.domain:
            continue
        path = _path(graph, producer, spec.domain)
        if path:
            cycle = " -> ".join([spec.domain, *path])
            yield (
                f"consumes {ref}, which closes a dependency cycle between domains: {cycle}",
                "break the cycle: move the shared logic into one domain",
            )


def _path(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A path of domains from ``start`` to ``goal`` (depth-first), or None."""
    stack, seen = [(start, [start])], {start}
    while stack:
        node, path = stack.pop()
        if node == goal:
            return path
        for nxt in sorted(graph.get(node, ())):
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def _safe_names(spec, contract, mesh):
    for what, name in [("product", spec.name), *(("column", c.name) for c in spec.columns)]:
        if not IDENTIFIER.match(name):
            yield (
                f"{what} name {name!r} is not a safe identifier",
                "use lower-case letters, digits and underscores, starting with a letter",
            )


def _landing_paths(spec, contract, mesh):
    if not spec.sources:
        return
    try:
        landing = config.landing_dir()
    except FileNotFoundError:  # no data directory to resolve links in: the text only
        landing = None
    for alias, path in sorted(spec.sources.items()):
        problem = landing_path_problem(path)
        if problem is None and landing is not None:
            problem = landing_escape(landing, path)
        if problem:
            yield (
                f"landing source {alias!r} path {path!r} {problem}",
                "name a folder inside the landing area (relative, no '..'); read other domains' "
                "data by consuming their products",
            )


GLOBAL_POLICIES: dict[str, tuple[str, Check]] = {
    "owner": ("every product has an owner team", _owner),
    "description": ("every product other domains may read has a description", _description),
    "contract": (
        "every product other domains may read has a data contract; every contract is valid",
        _contract,
    ),
    "columns_documented": (
        "every column of a product other domains may read is described and classified",
        _columns_documented,
    ),
    "public_sla": ("products other domains may read have a freshness SLA", _public_sla),
    "public_blocking_check": (
        "products other domains may read have at least one blocking check",
        _public_blocking_check,
    ),
    "known_products": ("a product consumes only products the mesh offers", _known_products),
    "access": ("a product consumes another only if its access level allows it", _access),
    "domain_cycles": ("no dependency cycles between domains", _domain_cycles),
    "safe_names": ("product and column names are safe identifiers", _safe_names),
    "landing_paths": (
        "a landing source names a folder inside the landing area",
        _landing_paths,
    ),
}


# Policies that ask more of a product once another domain may read it
# (ProductSpec.exposed): a domain's internals answer only to the others.
EXPOSURE_POLICIES = (
    "description",
    "contract",
    "columns_documented",
    "public_sla",
    "public_blocking_check",
)

# The declaration layer reserves these names for domain policies.
assert set(GLOBAL_POLICIES) == GLOBAL_POLICY_NAMES, set(GLOBAL_POLICIES) ^ GLOBAL_POLICY_NAMES


def policy_violations(mesh: MeshView, domain_names: Iterable[str] | None = None) -> list[Violation]:
    """Global and domain policies over the products of ``domain_names``
    (default: every domain)."""
    wanted = set(domain_names) if domain_names is not None else set(mesh.domains)
    violations = []
    for ref, spec in sorted(mesh.specs.items()):
        if spec.domain not in wanted:
            continue
        contract = mesh.contracts.get(ref)
        for name, (_, check) in GLOBAL_POLICIES.items():
            violations += [Violation(ref, name, m, fix) for m, fix in check(spec, contract, mesh)]
        for name, (description, check) in mesh.domains[spec.domain].policies.items():
            for message in check(spec) or ():
                violations.append(
                    Violation(ref, f"{spec.domain}.{name}", message, f"comply with: {description}")
                )
    return violations


def exposure_advice(mesh: MeshView, domain_names: Iterable[str] | None = None) -> list[Violation]:
    """What the product policies would ask of each product no other domain
    may read yet, were it exposed (made public): advice, never a violation."""
    wanted = set(domain_names) if domain_names is not None else set(mesh.domains)
    advice = []
    for ref, spec in sorted(mesh.specs.items()):
        if spec.domain not in wanted or spec.exposed:
            continue
        public = replace(spec, access="public")
        contract = mesh.contracts.get(ref)
        for name in EXPOSURE_POLICIES:
            check = GLOBAL_POLICIES[name][1]
            advice += [
                # Said of a product not exposed yet: "would need", not "is public but".
                Violation(ref, name, m.replace("is public but ", ""), fix)
                for m, fix in check(public, contract, mesh)
            ]
    return advice


def contract_drift(mesh: MeshView) -> list[Violation]:
    """Contract files that disagree with their product's declaration."""
    violations = []
    for ref, spec in sorted(mesh.specs.items()):
        existing = mesh.documents.get(ref)
        if existing is None or ref in mesh.contract_errors:
            continue
        for difference in drift(existing, spec):
            violations.append(
                Violation(
                    ref,
                    "contract_in_sync",
                    f"contract out of date: {difference}",
                    f"run `dagmesh contracts sync {spec.domain}`",
                )
            )
    return violations


def breaking_violations(mesh: MeshView, home: Path) -> list[Violation]:
    """Breaking changes of each contract against the contract its current
    version was published under, unless the major version was raised."""
    violations = []
    store = ports_store(home)  # the profile's ports: local disk or object storage
    for ref, spec in sorted(mesh.specs.items()):
        contract = mesh.contracts.get(ref)
        current = store.port(spec.domain, spec.name).current()
        published = current.contract() if current else None
        if contract is None or not published:
            continue
        proposed = merge(mesh.documents.get(ref), spec)
        try:
            changes = requires_major_bump(published, proposed)
        except ValueError as error:
            violations.append(Violation(ref, "breaking_change", str(error), "use semver"))
            continue
        for change in changes:
            violations.append(
                Violation(
                    ref,
                    "breaking_change",
                    f"breaking change against published contract {published.get('version')}: "
                    f"{change.message}",
                    f"raise the contract's major version (now {contract.version}) and tell "
                    "its consumers, or keep the column compatible",
                )
            )
    return violations


def deprecation_warnings(mesh: MeshView, domain_names: Iterable[str] | None = None) -> list[str]:
    """One warning per product consuming a deprecated product."""
    wanted = set(domain_names) if domain_names is not None else set(mesh.domains)
    warnings = []
    for ref, spec in sorted(mesh.specs.items()):
        if spec.domain not in wanted:
            continue
        for consumed in spec.consumes:
            producer = mesh.interface(consumed)
            if producer is None or producer.deprecation is None:
                continue
            sunset, replacement = producer.deprecation
            warnings.append(
                f"{ref} consumes {consumed}, deprecated in contract {producer.contract_version} "
                f"(sunset {sunset})" + (f"; use {replacement} instead" if replacement else "")
            )
    return warnings


def enforce_at_load(domain: Domain, registry: Registry) -> MeshView:
    """Check one code location's domain against the mesh: every product it
    consumes exists in its own code or the registry (MeshError otherwise),
    and its products comply with every policy (GovernanceError listing every
    violation otherwise). Logs a warning for each deprecated product it
    consumes. Reads no other domain's code."""
    mesh = MeshView.for_location(domain, registry)
    violations = policy_violations(mesh, [domain.name])
    for warning in deprecation_warnings(mesh, [domain.name]):
        log.warning("deprecated: %s", warning)
    if violations:
        raise GovernanceError(
            f"domain {domain.name} violates {len(violations)} governance polic{{}}:\n".format(
                "y" if len(violations) == 1 else "ies"
            )
            + "\n".join(f"- {v}" for v in violations)
        )
    return mesh
