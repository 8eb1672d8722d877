"""The mesh: which domains exist (workspace.yaml) and what products they offer.

A domain is the package of a code location listed in workspace.yaml; its
``products`` module declares one :class:`~dagmesh.product.Domain`. Importing
it is cheap (declarations only), so a code location can check the products it
consumes without loading the other locations' Dagster definitions.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import yaml

from dagmesh import config
from dagmesh.dbt.project import DbtProjectError
from dagmesh.product import Domain


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


def workspace_subset(folder: Path, names: Collection[str]) -> Path:
    """Write a workspace.yaml holding only the locations ``names`` into
    ``folder`` and return it."""
    settings = yaml.safe_load(config.workspace_file().read_text()) or {}
    by_name = {loc.module: name for name, loc in workspace_locations().items()}
    kept = []
    for entry in settings.get("load_from", []):
        target = entry.get("python_module")
        module = target if isinstance(target, str) else (target or {}).get("module_name")
        if by_name.get(module) in names:
            kept.append(entry)
    path = folder / config.WORKSPACE_FILE
    path.write_text(yaml.safe_dump({**settings, "load_from": kept}))
    return path


def load_domain(location: Location) -> Domain:
    """Import a location's ``products`` module and return its Domain (the
    project root comes first on the import path, as in a code server)."""
    root = str(config.project_root())
    if root not in sys.path:
        sys.path.insert(0, root)
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
) -> str:
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


def product_of(domain: Domain, name: str, ref: str, consumer: str) -> str:
    """``ref`` if ``domain`` has a product ``name``, else a MeshError naming
    both products."""
    names = domain.product_names()
    if name not in names:
        raise MeshError(
            f"{consumer} consumes {ref!r}, but domain {domain.name!r} has no product {name!r} "
            f"(its products: {sorted(names)})"
        )
    return ref


def consumed_refs(domain: Domain) -> list[tuple[str, str]]:
    """(consumer, consumed) product pairs of ``domain``, its dbt models' port
    sources included."""
    pairs = [(p.ref, ref) for p in domain.products.values() for ref in p.consumes.values()]
    if domain.dbt is not None:
        users = defaultdict(list)
        for node in domain.dbt.product_nodes().values():
            for parent in node.get("depends_on", {}).get("nodes", []):
                users[parent].append(f"{domain.name}/{node['name']}")
        for uid, (producer, name) in domain.dbt.port_sources().items():
            for consumer in users.get(uid) or [f"{domain.name} (dbt source)"]:
                pairs.append((consumer, f"{producer}/{name}"))
    return pairs


def check_consumed(domain: Domain, workspace: Path | None = None) -> None:
    """Raise MeshError naming both products if ``domain`` consumes an unknown
    product. A producer whose dbt project does not compile is not checked
    here: its own code location reports that, and this one still loads."""
    locations = workspace_locations(workspace)
    for consumer, ref in consumed_refs(domain):
        producer, name = ref.split("/")
        if producer == domain.name:
            product_of(domain, name, ref, consumer)
            continue
        try:
            resolve(ref, consumer, locations=locations)
        except DbtProjectError as error:
            logging.getLogger("dagmesh").warning(
                "%s consumes %s, not checked: %s", consumer, ref, str(error).splitlines()[0]
            )
