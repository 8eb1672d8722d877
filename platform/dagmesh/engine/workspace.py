"""The repository's side of the mesh: which domains workspace.yaml lists, and
their declarations.

A domain is the package of a code location listed in workspace.yaml; its
``products`` module declares one :class:`~dagmesh.declarations.product.Domain`. Only the
tools that look at the whole repository (``dagmesh lint``, ``register``,
``catalog``, scaffolding) import every domain; a code location imports its
own and learns the others' interfaces from :mod:`dagmesh.engine.registry`.
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
from dagmesh.declarations.product import Domain
from dagmesh.engine.atomic import write_atomically
from dagmesh.engine.registry import MeshError


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


def entry_location(entry: dict) -> str | None:
    """The location name of one ``load_from`` entry (``python_module`` or
    ``grpc_server``), None for an entry it cannot name."""
    for kind in ("python_module", "grpc_server"):
        target = entry.get(kind)
        if isinstance(target, str):
            return target.split(".")[-2] if "." in target else target
        if isinstance(target, dict):
            module = str(target.get("module_name", ""))
            return target.get("location_name") or (module.split(".")[-2] if "." in module else None)
    return None


def workspace_subset(folder: Path, names: Collection[str]) -> Path:
    """Write a workspace.yaml holding only the locations ``names`` of the
    workspace runs load (:func:`dagmesh.config.run_workspace_file`) into
    ``folder`` and return it."""
    settings = yaml.safe_load(config.run_workspace_file().read_text()) or {}
    kept = [e for e in settings.get("load_from", []) if entry_location(e) in names]
    path = folder / config.WORKSPACE_FILE
    path.write_text(yaml.safe_dump({**settings, "load_from": kept}))
    return path


MESH_MODULE = "dagmesh.orchestration.mesh_location"


def mesh_workspace_file() -> Path:
    """The workspace file of the platform's own code location
    (:data:`dagmesh.config.MESH_LOCATION`, cross-domain materializations),
    written beside the instance's dagster.yaml; the UI, the daemon and
    ``dagmesh materialize`` load it next to the domains' workspace."""
    entry = {
        "module_name": MESH_MODULE,
        "location_name": config.MESH_LOCATION,
        "working_directory": str(config.project_root()),
    }
    text = yaml.safe_dump({"load_from": [{"python_module": entry}]}, sort_keys=False)
    path = config.dagster_home() / "mesh.workspace.yaml"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text)
    return path


GRPC_HEADER = (
    "# Written by `dagmesh workspace --grpc`: one gRPC code server per domain.\n"
    "# Start each one as its domain's own process (or container):\n"
)


def grpc_workspace(host: str, base_port: int) -> tuple[str, dict[str, tuple[str, int]]]:
    """A workspace of one ``grpc_server`` entry per domain of workspace.yaml
    (ports ``base_port``, ``base_port + 1``... in its order; ``{domain}`` in
    ``host`` is replaced by the domain, e.g. a service name per domain), and
    where each domain's server listens. Each entry's comment is the command
    that starts that domain's code server."""
    locations = workspace_locations()
    if base_port < 1 or base_port + len(locations) > 65536:
        raise MeshError(f"ports {base_port}..{base_port + len(locations) - 1} are not valid")
    try:
        addresses = {
            name: (host.format(domain=name), base_port + i) for i, name in enumerate(locations)
        }
    except (KeyError, IndexError, ValueError) as error:
        raise MeshError(
            f"host {host!r}: only {{domain}} may be in braces ({type(error).__name__}: {error})"
        ) from None
    lines = [GRPC_HEADER.rstrip("\n")]
    for name, location in locations.items():
        lines.append(f"#   {code_server_command(location, *addresses[name])}")
    entries = [
        {"grpc_server": {"host": h, "port": p, "location_name": name}}
        for name, (h, p) in addresses.items()
    ]
    text = "\n".join(lines) + "\n" + yaml.safe_dump({"load_from": entries}, sort_keys=False)
    return text, addresses


def code_server_command(location: Location, host: str, port: int) -> str:
    """How to start ``location``'s own gRPC code server (from the project
    folder, with the mesh's environment: DAGMESH_HOME, DAGMESH_PROFILE and
    the instance's variables, which the run workers it starts need)."""
    listen = host if host in ("127.0.0.1", "localhost") else "0.0.0.0"
    return f"dagmesh code-server {location.name} -h {listen} -p {port}"


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
