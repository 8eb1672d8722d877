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
from dataclasses import dataclass, field
from pathlib import Path

from dagmesh.access import describe_access
from dagmesh.contracts.breaking import requires_major_bump
from dagmesh.contracts.checks import rule_problems
from dagmesh.contracts.generate import (
    ContractError,
    contract_path,
    drift,
    merge,
    parse,
    read_file,
)
from dagmesh.contracts.model import Contract
from dagmesh.dbt.project import DbtProjectError
from dagmesh.product import IDENTIFIER, Domain
from dagmesh.spec import ProductSpec, domain_specs
from dagmesh.storage import OutputPort

log = logging.getLogger("dagmesh")


class GovernanceError(ValueError):
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


@dataclass
class MeshView:
    """Every product of the mesh with its effective contract, for policies
    that look across domains (access, cycles)."""

    domains: dict[str, Domain]
    specs: dict[str, ProductSpec] = field(default_factory=dict)
    contracts: dict[str, Contract | None] = field(default_factory=dict)
    contract_errors: dict[str, str] = field(default_factory=dict)
    documents: dict[str, dict | None] = field(default_factory=dict)  # the files as written

    @classmethod
    def build(cls, domains: dict[str, Domain]) -> MeshView:
        """Read every domain's specs and contract files (a dbt project that
        does not compile is skipped with a warning: its own location reports it)."""
        view = cls(domains)
        for domain in domains.values():
            try:
                specs = domain_specs(domain)
            except DbtProjectError as error:
                log.warning("domain %s not checked: %s", domain.name, str(error).splitlines()[0])
                continue
            for spec in specs.values():
                view.specs[spec.ref] = spec
                view.contracts[spec.ref] = None
                path = contract_path(domain, spec.name)
                try:
                    document = view.documents[spec.ref] = read_file(path)
                    if document is not None:
                        view.contracts[spec.ref] = parse(merge(document, spec), str(path))
                except ContractError as error:
                    view.contract_errors[spec.ref] = str(error)
        return view


Check = Callable[[ProductSpec, "Contract | None", MeshView], Iterable[tuple[str, str]]]


def _owner(spec, contract, mesh):
    if not spec.owner.strip():
        yield "has no owner team", "set owner= on the product or its Domain (dbt: a group owner)"


def _description(spec, contract, mesh):
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
    elif contract is None:
        domain = mesh.domains[spec.domain]
        path = contract_path(domain, spec.name)
        yield (
            f"has no data contract ({path.name} is missing)",
            f"run `dagmesh contracts sync {spec.domain}` and commit {path.name}",
        )
    else:
        for column, rule in contract.quality_rules():
            for problem in rule_problems(column, rule):
                where = f"column {column!r}" if column else "the table"
                yield f"quality rule on {where}: {problem}", "correct the rule in the contract"


def _columns_documented(spec, contract, mesh):
    if spec.access != "public":
        return
    for column in spec.columns:
        if not column.description.strip():
            yield (
                f"column {column.name!r} of a public product has no description",
                "describe the column",
            )
        if not column.classification:
            yield (
                f"column {column.name!r} of a public product is not classified",
                "give it a classification (pii(...), or classification= on the product; "
                "dbt: meta.classification)",
            )


def _public_sla(spec, contract, mesh):
    if spec.access == "public" and contract is not None and contract.freshness is None:
        yield (
            "is public but its contract has no freshness SLA",
            "add slaProperties: [{property: latency, value: 1, unit: d}] to the contract",
        )


def _public_blocking_check(spec, contract, mesh):
    if spec.access != "public":
        return
    blocking_rules = [r for _, r in (contract.quality_rules() if contract else []) if r.blocking]
    if not spec.blocking_checks and not blocking_rules:
        yield (
            "is public but has no blocking quality check",
            "declare a primary key or required columns, or add an error-severity quality "
            "rule to the contract (dbt: a test)",
        )


def _access(spec, contract, mesh):
    for ref in spec.consumes:
        producer = mesh.specs.get(ref)
        if producer is None or producer.readable_by(spec.domain):
            continue
        who = describe_access(producer.domain, producer.access, producer.consumers)
        yield (
            f"consumes {ref}, which is {who}",
            f"stop consuming it, or ask {producer.domain} to grant access "
            f"(access='public' or consumers=[{spec.domain!r}])",
        )


def _domain_cycles(spec, contract, mesh):
    graph: dict[str, set[str]] = {}
    for other in mesh.specs.values():
        for ref in other.consumes:
            producer = ref.split("/")[0]
            if producer != other.domain:
                graph.setdefault(other.domain, set()).add(producer)
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


GLOBAL_POLICIES: dict[str, tuple[str, Check]] = {
    "owner": ("every product has an owner team", _owner),
    "description": ("every product has a description", _description),
    "contract": ("every product has a valid data contract", _contract),
    "columns_documented": (
        "every column of a public product is described and classified",
        _columns_documented,
    ),
    "public_sla": ("public products have a freshness SLA", _public_sla),
    "public_blocking_check": (
        "public products have at least one blocking check",
        _public_blocking_check,
    ),
    "access": ("a product consumes another only if its access level allows it", _access),
    "domain_cycles": ("no dependency cycles between domains", _domain_cycles),
    "safe_names": ("product and column names are safe identifiers", _safe_names),
}


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
    for ref, spec in sorted(mesh.specs.items()):
        contract = mesh.contracts.get(ref)
        current = OutputPort(home, spec.domain, spec.name).current()
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
            contract = mesh.contracts.get(consumed)
            if contract is None or contract.deprecation is None:
                continue
            sunset, replacement = contract.deprecation
            warnings.append(
                f"{ref} consumes {consumed}, deprecated in contract {contract.version} "
                f"(sunset {sunset})" + (f"; use {replacement} instead" if replacement else "")
            )
    return warnings


def enforce_at_load(domain: Domain, domains: dict[str, Domain]) -> MeshView:
    """Raise GovernanceError listing every violation of ``domain``'s
    products; log a warning for each deprecated product it consumes."""
    mesh = MeshView.build({**domains, domain.name: domain})
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
