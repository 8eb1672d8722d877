"""What a policy check sees of the mesh: the domains whose code is loaded,
their specs and contracts, and the registry's interfaces of the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from dagmesh.declarations.contract import Contract
from dagmesh.declarations.product import Domain
from dagmesh.declarations.spec import ProductSpec
from dagmesh.engine.contracts.generate import ContractError, contract_path, merge, parse, read_file
from dagmesh.engine.dbt.project import DbtProjectError, dbt_project
from dagmesh.engine.registry import MeshError, ProductInterface, Registry, interface_of
from dagmesh.engine.specs import domain_specs, product_names


@dataclass
class MeshView:
    """The products a check can see: those whose code is loaded (``domains``:
    their declarations and contract files) and, for every other domain, its
    published interfaces in the mesh registry. A code location's view holds
    its own domain only; ``dagmesh lint``'s holds the whole repository."""

    domains: dict[str, Domain]
    specs: dict[str, ProductSpec] = field(default_factory=dict)
    contracts: dict[str, Contract | None] = field(default_factory=dict)
    contract_errors: dict[str, str] = field(default_factory=dict)
    documents: dict[str, dict | None] = field(default_factory=dict)  # the files as written
    registry: Registry | None = None
    unreadable: dict[str, str] = field(default_factory=dict)  # dbt does not compile: why

    @classmethod
    def build(cls, domains: dict[str, Domain], registry: Registry | None = None) -> MeshView:
        """Read every domain's specs and contract files. A dbt project that
        does not compile is kept in ``unreadable`` with dbt's whole message,
        for the caller to report (lint fails, the catalog shows it broken)."""
        view = cls(domains, registry=registry)
        for domain in domains.values():
            try:
                view.add_domain(domain)
            except DbtProjectError as error:
                view.unreadable[domain.name] = str(error)
        return view

    @classmethod
    def for_location(cls, domain: Domain, registry: Registry) -> MeshView:
        """What one code location sees: its own domain's code and the
        registry's interfaces of the domains it consumes. Raises MeshError
        naming both products when it consumes an unknown or unregistered one,
        and DbtProjectError when its own dbt project does not compile."""
        view = cls({domain.name: domain}, registry=registry)
        view.add_domain(domain)
        for consumer, ref in view.consumed_refs(domain.name):
            producer, name = ref.split("/")
            if producer != domain.name:
                registry.require(ref, consumer)
            elif ref not in view.specs:
                raise MeshError(
                    f"{consumer} consumes {ref!r}, but domain {producer!r} has no product "
                    f"{name!r} (its products: {sorted(product_names(domain))})"
                )
        return view

    def add_domain(self, domain: Domain) -> None:
        """Read ``domain``'s specs and contract files into the view."""
        for spec in domain_specs(domain).values():
            self.specs[spec.ref] = spec
            self.contracts[spec.ref] = None
            path = contract_path(domain, spec.name)
            try:
                document = self.documents[spec.ref] = read_file(path)
                if document is not None:
                    self.contracts[spec.ref] = parse(merge(document, spec), str(path))
            except ContractError as error:
                self.contract_errors[spec.ref] = str(error)

    def consumed_refs(self, domain_name: str) -> list[tuple[str, str]]:
        """(consumer, consumed) pairs of a loaded domain, its dbt project's
        port sources that no model reads included."""
        pairs = [
            (spec.ref, ref)
            for spec in self.specs.values()
            if spec.domain == domain_name
            for ref in spec.consumes
        ]
        project = dbt_project(self.domains[domain_name])
        if project is not None:
            used = {ref for _, ref in pairs}
            for producer, name in project.port_sources().values():
                if f"{producer}/{name}" not in used:
                    pairs.append((f"{domain_name} (dbt source)", f"{producer}/{name}"))
        return pairs

    def interface(self, ref: str) -> ProductInterface | None:
        """What consumers may rely on of ``ref``: from its code when loaded,
        else from the registry; None when neither knows it."""
        if ref in self.specs:
            return interface_of(self.specs[ref], self.contracts.get(ref))
        domain = ref.split("/")[0]
        if domain in self.domains or self.registry is None:
            return None
        return self.registry.product(ref)

    def knows_domain(self, domain: str) -> bool:
        """True when the view can tell which products ``domain`` has."""
        if domain in self.domains:
            return domain not in self.unreadable
        return self.registry is not None and self.registry.domain(domain) is not None

    @cached_property
    def domain_graph(self) -> dict[str, set[str]]:
        """Consumer domain -> the domains it reads, for every loaded domain
        and every registered domain reachable from them."""
        graph: dict[str, set[str]] = {}
        for spec in self.specs.values():
            for ref in spec.consumes:
                producer = ref.split("/")[0]
                if producer != spec.domain:
                    graph.setdefault(spec.domain, set()).add(producer)
        pending = {p for producers in graph.values() for p in producers} - set(self.domains)
        seen = set(self.domains)
        while pending and self.registry is not None:
            name = pending.pop()
            seen.add(name)
            entry = self.registry.domain(name)
            for product in entry.products.values() if entry else ():
                for ref in product.consumes:
                    producer = ref.split("/")[0]
                    if producer != name:
                        graph.setdefault(name, set()).add(producer)
                        if producer not in seen:
                            pending.add(producer)
        return graph
