"""The mesh: which domains exist (workspace.yaml) and what products they offer.

A domain is the package of a code location listed in workspace.yaml; its
``products`` module declares one :class:`~dagmesh.product.Domain`. Importing
it is cheap (declarations only), so a code location can check the products it
consumes without loading the other locations' Dagster definitions.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from dagmesh import config
from dagmesh.product import Domain, Product


class MeshError(ValueError):
    """The mesh's declarations are inconsistent (unknown product, cycle...)."""


@dataclass(frozen=True)
class Location:
    """One code location of workspace.yaml."""

    name: str
    module: str

    @property
    def package(self) -> str:
        """The domain package (``domains.sales`` for ``domains.sales.definitions``)."""
        return self.module.rsplit(".", 1)[0]


def workspace_locations(workspace: Path | None = None) -> dict[str, Location]:
    """Code locations listed in workspace.yaml, by location (= domain) name."""
    path = workspace or config.workspace_file()
    entries = (yaml.safe_load(path.read_text()) or {}).get("load_from", [])
    locations = {}
    for entry in entries:
        target = entry.get("python_module")
        if isinstance(target, str):
            target = {"module_name": target}
        if not target:
            continue
        module = target["module_name"]
        name = target.get("location_name") or module.split(".")[-2]
        locations[name] = Location(name, module)
    return locations


def load_domain(location: Location) -> Domain:
    """Import a location's ``products`` module and return its Domain."""
    module = importlib.import_module(f"{location.package}.products")
    domains = [v for v in vars(module).values() if isinstance(v, Domain)]
    if len(domains) != 1:
        raise MeshError(
            f"{module.__name__} must declare exactly one dagmesh.Domain, found {len(domains)}"
        )
    return domains[0]


def load_mesh(workspace: Path | None = None) -> dict[str, Domain]:
    """Every domain of the workspace, by name."""
    return {name: load_domain(loc) for name, loc in workspace_locations(workspace).items()}


def resolve(
    ref: str,
    consumer: str,
    workspace: Path | None = None,
    locations: dict[str, Location] | None = None,
) -> Product:
    """The product named ``ref`` (``domain/name``); ``consumer`` is who asks,
    named in the error when it does not exist."""
    domain_name, _, name = ref.partition("/")
    locations = locations if locations is not None else workspace_locations(workspace)
    if domain_name not in locations:
        raise MeshError(
            f"{consumer} consumes {ref!r}, but there is no domain {domain_name!r} in the "
            f"workspace (domains: {sorted(locations)})"
        )
    return product_of(load_domain(locations[domain_name]), name, ref, consumer)


def product_of(domain: Domain, name: str, ref: str, consumer: str) -> Product:
    """``domain``'s product ``name``, or a MeshError naming both products."""
    if name not in domain.products:
        raise MeshError(
            f"{consumer} consumes {ref!r}, but domain {domain.name!r} has no product {name!r} "
            f"(its products: {sorted(domain.products)})"
        )
    return domain.products[name]


def check_consumed(domain: Domain, workspace: Path | None = None) -> None:
    """Raise MeshError naming both products if ``domain`` consumes an unknown product."""
    locations = workspace_locations(workspace)
    for product in domain.products.values():
        for ref in product.consumes.values():
            producer, name = ref.split("/")
            if producer == domain.name:
                product_of(domain, name, ref, product.ref)
            else:
                resolve(ref, product.ref, locations=locations)
