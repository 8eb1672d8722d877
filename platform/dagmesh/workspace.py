"""The repository's side of the mesh: which domains workspace.yaml lists, and
their declarations.

A domain is the package of a code location listed in workspace.yaml; its
``products`` module declares one :class:`~dagmesh.product.Domain`. Only the
tools that look at the whole repository (``dagmesh lint``, ``register``,
``catalog``, scaffolding) import every domain; a code location imports its
own and learns the others' interfaces from :mod:`dagmesh.registry`.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import yaml

from dagmesh import config
from dagmesh.product import Domain
from dagmesh.registry import MeshError


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
    """Every domain of the workspace, by name (the first one that cannot be
    imported raises)."""
    return {name: load_domain(loc) for name, loc in workspace_locations(workspace).items()}


def load_mesh_tolerant(
    workspace: Path | None = None, only: Collection[str] | None = None
) -> tuple[dict[str, Domain], dict[str, str]]:
    """The domains of the workspace (or those named ``only``) that import,
    and, for each one that does not, its error: one broken domain does not
    hide the others."""
    domains, errors = {}, {}
    for name, location in workspace_locations(workspace).items():
        if only is not None and name not in only:
            continue
        try:
            domains[name] = load_domain(location)
        except Exception as error:  # a domain's own code: anything can happen
            where = traceback.extract_tb(error.__traceback__)[-1]
            errors[name] = (
                f"{location.package}.products does not import: {type(error).__name__}: "
                f"{error} ({where.filename}:{where.lineno})"
            )
    return domains, errors
