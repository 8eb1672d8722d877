"""Registering domains: each is checked against the mesh's policies, then
its products' interfaces are published to the mesh registry, where the code
locations of the domains that consume them read them."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from dagmesh.engine.governance import policy_violations
from dagmesh.engine.mesh_view import MeshView
from dagmesh.engine.registry import MeshError, ProductInterface, Registry, fingerprint, interface_of
from dagmesh.engine.workspace import load_mesh_tolerant, workspace_locations


@dataclass
class Registration:
    """What ``dagmesh register`` did, per domain."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=dict)


def domain_interfaces(mesh: MeshView, domain: str) -> list[ProductInterface]:
    """The interfaces ``domain``'s code declares (it must be in ``mesh``)."""
    return [
        interface_of(spec, mesh.contracts.get(ref))
        for ref, spec in sorted(mesh.specs.items())
        if spec.domain == domain
    ]


def register_domains(registry: Registry, names: Collection[str] | None = None) -> Registration:
    """Register the workspace's domains (or those ``names``): a domain that
    does not import, whose dbt project does not compile or whose products
    violate a policy is refused with the reasons, and its registered
    interfaces stay as they were; the others are written."""
    known = workspace_locations()
    if names is not None and (unknown := set(names) - set(known)):
        raise MeshError(f"no domain {sorted(unknown)} in the workspace (domains: {sorted(known)})")
    domains, import_errors = load_mesh_tolerant(only=names)
    mesh = MeshView.build(domains, registry)
    outcome = Registration(refused={name: [error] for name, error in import_errors.items()})
    for name, error in mesh.unreadable.items():
        outcome.refused[name] = [error]
    for violation in policy_violations(mesh, domains):
        outcome.refused.setdefault(violation.product.split("/")[0], []).append(str(violation))
    for name, domain in sorted(domains.items()):
        if name in outcome.refused:
            continue
        products = domain_interfaces(mesh, name)
        if registry.write(name, domain.owner, domain.description, products):
            outcome.written.append(name)
        else:
            outcome.unchanged.append(name)
    return outcome


def registry_drift(mesh: MeshView) -> list[str]:
    """One warning per loaded domain whose registered interfaces differ from
    its code (never registered, or changed since)."""
    if mesh.registry is None:
        return []
    warnings = []
    for name in sorted(set(mesh.domains) - set(mesh.unreadable)):
        try:
            entry = mesh.registry.domain(name)
        except MeshError as error:
            warnings.append(str(error))
            continue
        if entry is None:
            warnings.append(f"domain {name} is not registered: run `dagmesh register {name}`")
        elif entry.fingerprint != fingerprint(domain_interfaces(mesh, name)):
            warnings.append(
                f"domain {name}'s registered interfaces ({entry.registered_at}) differ from "
                f"its code: run `dagmesh register {name}`"
            )
    return warnings
