"""What adopting an existing dbt project makes of what it holds.

``dagmesh new domain NAME --dbt-project PATH`` reports this before it writes
anything: for each kind of thing dbt projects commonly hold (seeds, models by
materialization, snapshots, tests, unit tests, sources, exposures, macros,
vars, versions, groups and access, ``+schema``/``+database``, the profile),
what it becomes in the mesh, and what could not be adopted. A project that
needs dbt packages is refused first (``dbt deps`` needs the network), before
dbt runs at all, so nothing is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dagmesh.declarations.dbt_manifest import (
    PORTS_DATABASE,
    node_access,
    own_source_producers,
    product_name,
)
from dagmesh.declarations.product import IDENTIFIER
from dagmesh.engine.dbt.project import IGNORED_DIRS, DbtProjectError, DomainDbtProject

PACKAGE_FILES = ("packages.yml", "dependencies.yml")
PACKAGE_KEYS = ("package", "git", "local", "tarball", "private")


class DbtPackagesError(DbtProjectError):
    """The dbt project needs packages that cannot be installed here."""


@dataclass(frozen=True)
class Finding:
    """One kind of thing the project holds and what adoption makes of it."""

    kind: str
    names: tuple[str, ...]
    becomes: str
    adopted: bool = True
    counted: bool = True  # names are things to count (not a breakdown)

    def __str__(self) -> str:
        shown = ", ".join(self.names[:8]) + (", …" if len(self.names) > 8 else "")
        count = f"{len(self.names)} " if self.counted else ""
        return f"{count}{self.kind} ({shown}): {self.becomes}"


@dataclass
class Survey:
    """What a dbt project holds, kind by kind."""

    project: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def adopted(self) -> list[Finding]:
        """What becomes part of the domain."""
        return [f for f in self.findings if f.adopted]

    @property
    def not_adopted(self) -> list[Finding]:
        """What the project holds that the mesh does not run or show."""
        return [f for f in self.findings if not f.adopted]

    def add(
        self,
        kind: str,
        names: list[str],
        becomes: str,
        adopted: bool = True,
        counted: bool = True,
    ) -> None:
        """Record a kind, if the project has any of it."""
        if names:
            self.findings.append(Finding(kind, tuple(sorted(names)), becomes, adopted, counted))


# -- packages: refused before dbt runs --------------------------------------


def _package_label(entry: Mapping[str, Any]) -> str:
    for key in PACKAGE_KEYS:
        if entry.get(key):
            version = entry.get("version") or entry.get("revision")
            return f"{entry[key]}" + (f" {version}" if version else "")
    return str(dict(entry))


def required_packages(project_dir: Path) -> list[str]:
    """The dbt packages ``packages.yml``/``dependencies.yml`` name that are
    not installed in the project's ``dbt_packages`` folder, as ``file: name``.
    Raises DbtPackagesError naming the file when it is not valid YAML."""
    missing = []
    for file_name in PACKAGE_FILES:
        path = project_dir / file_name
        if not path.is_file():
            continue
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise DbtPackagesError(
                f"{path.name} of dbt project {project_dir} is not YAML: {error}"
            ) from None
        if not isinstance(document, dict):
            continue
        entries = document.get("packages") or []
        projects = document.get("projects") or []
        for entry in entries:
            if isinstance(entry, Mapping) and not _installed(project_dir, entry):
                missing.append(f"{file_name}: {_package_label(entry)}")
        for entry in projects:  # dbt Mesh cross-project refs
            name = entry.get("name") if isinstance(entry, Mapping) else entry
            missing.append(f"{file_name}: project {name}")
    return missing


def _installed(project_dir: Path, entry: Mapping[str, Any]) -> bool:
    """True when ``dbt deps`` already installed the package (its folder in
    ``dbt_packages`` holds a dbt_project.yml): dbt then parses without it."""
    name = str(entry.get("package") or entry.get("git") or entry.get("local") or "")
    stem = name.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    folder = project_dir / "dbt_packages"
    if not folder.is_dir() or not stem:
        return False
    return any(
        (child / "dbt_project.yml").is_file() and stem in {child.name, child.name.replace("-", "_")}
        for child in folder.iterdir()
    )


def refuse_packages(project_dir: Path) -> None:
    """Raise DbtPackagesError naming every package the project needs and what
    to do, when it needs any that is not installed."""
    missing = required_packages(project_dir)
    if not missing:
        return
    raise DbtPackagesError(
        f"dbt project {project_dir.name} needs dbt packages that are not installed: "
        f"{'; '.join(missing)}. `dbt deps` cannot run here (no network), and dagmesh "
        "writes nothing inside an adopted project. Either copy the macros the project uses "
        "into its macros/ folder and remove the entries, or run `dbt deps` where the "
        "network is and bring the project with its dbt_packages/ folder; then adopt it again. "
        "Nothing was written."
    )


# -- the survey --------------------------------------------------------------


def _own_nodes(project: DomainDbtProject, resource_type: str) -> list[dict[str, Any]]:
    return [
        node
        for node in project.manifest["nodes"].values()
        if node["resource_type"] == resource_type and node.get("package_name") == project.name
    ]


def _models(survey: Survey, project: DomainDbtProject) -> None:
    by_kind: dict[str, list[str]] = {}
    for node in _own_nodes(project, "model"):
        materialized = node.get("config", {}).get("materialized") or "view"
        by_kind.setdefault(materialized, []).append(product_name(node))
    what = {
        "view": "products (dbt builds a view in the domain's warehouse; its rows are published)",
        "table": "products",
        "incremental": "products; their state (the table dbt appends to or merges into) stays "
        "in the domain's warehouse across runs, each run publishes the whole table",
        "ephemeral": "not products: dbt inlines them into the models that ref them",
    }
    for materialized, names in sorted(by_kind.items()):
        becomes = what.get(materialized, f"products (materialized as {materialized!r})")
        survey.add(f"{materialized} models", names, becomes)


def _tests(survey: Survey, project: DomainDbtProject) -> None:
    tests = _own_nodes(project, "test")
    survey.add(
        "data tests",
        [t["name"] for t in tests],
        "asset checks of the model each is defined on; severity error blocks publication",
    )
    survey.add(
        "yml entries with the older `tests:` key",
        list(_older_test_keys(project.project_dir)),
        "read as `data_tests:` (the same checks)",
    )
    units = [
        u["name"]
        for u in project.manifest.get("unit_tests", {}).values()
        if u.get("package_name") == project.name
    ]
    survey.add(
        "unit tests",
        units,
        "run by `dbt build` before their model, each a blocking asset check of it "
        "(a failing one keeps the model unbuilt)",
    )


def _older_test_keys(project_dir: Path) -> Iterator[str]:
    """The resources and columns of the project's yml files that declare
    their tests under ``tests:`` (``model`` or ``model.column``)."""
    for path in _yml_files(project_dir):
        try:
            document = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        if not isinstance(document, dict):
            continue
        for key in ("models", "seeds", "snapshots", "sources"):
            for resource in document.get(key) or []:
                yield from _tests_key(resource, "")


def _tests_key(resource: Any, parent: str) -> Iterator[str]:
    if not isinstance(resource, dict):
        return
    name = f"{parent}{resource.get('name', '?')}"
    if "tests" in resource:
        yield name
    for child in [*(resource.get("columns") or []), *(resource.get("tables") or [])]:
        yield from _tests_key(child, f"{name}.")


def _yml_files(project_dir: Path) -> Iterator[Path]:
    for path in sorted(project_dir.rglob("*.yml")):
        parts = path.relative_to(project_dir).parts
        if not (set(parts[:-1]) & IGNORED_DIRS) and path.name not in (
            "dbt_project.yml",
            *PACKAGE_FILES,
        ):
            yield path


def _sources(survey: Survey, project: DomainDbtProject) -> None:
    sources = [
        s for s in project.manifest["sources"].values() if s.get("package_name") == project.name
    ]
    ports = [
        f"{s['source_name']}.{s['name']}" for s in sources if s.get("database") == PORTS_DATABASE
    ]
    others = [
        f"{s['source_name']}.{s['name']}" for s in sources if s.get("database") != PORTS_DATABASE
    ]
    survey.add("port sources", ports, "inputs: other domains' published products, pinned per run")
    producers = own_source_producers(project.manifest)
    filled = [
        f"{s['source_name']}.{s['name']} ({project.manifest['nodes'][producers[uid]]['name']})"
        for uid, s in project.manifest["sources"].items()
        if uid in producers and s.get("package_name") == project.name
    ]
    survey.add(
        "sources the project builds itself",
        sorted(filled),
        "edges to the seed, model or snapshot that builds each; built first in a run",
    )
    filled_names = {f.split(" ")[0] for f in filled}
    survey.add(
        "sources",
        [name for name in others if name not in filled_names],
        "read as they are in the domain's warehouse (shown as assets the domain does not build)",
    )
    fresh = [
        f"{s['source_name']}.{s['name']}"
        for s in sources
        if any(
            ((s.get("freshness") or {}).get(k) or {}).get("count")
            for k in ("warn_after", "error_after")
        )
    ]
    survey.add(
        "source freshness rules",
        fresh,
        "not run (dagmesh does not run `dbt source freshness`): state the SLA in the "
        "contracts of the products that read them",
        adopted=False,
    )


def _configs(survey: Survey, project: DomainDbtProject) -> None:
    nodes = [
        n
        for n in project.manifest["nodes"].values()
        if n.get("package_name") == project.name
        and n["resource_type"] in ("model", "seed", "snapshot")
    ]
    schemas = [
        f"{product_name(n)} ({n['config']['schema']})"
        for n in nodes
        if n.get("config", {}).get("schema")
    ]
    survey.add(
        "nodes with +schema",
        schemas,
        "built in that schema of the domain's warehouse and published as usual",
    )
    databases = [
        f"{product_name(n)} ({n['config']['database']})"
        for n in nodes
        if n.get("config", {}).get("database")
    ]
    survey.add(
        "nodes with +database",
        databases,
        "not adopted: the generated profile has one database per domain, so these will fail "
        "to build; remove the +database config",
        adopted=False,
    )
    versions = [product_name(n) for n in nodes if n.get("version") is not None]
    survey.add(
        "model versions", versions, "each version is a product of its own, <model>_v<version>"
    )
    access = Counter(node_access(n) for n in nodes if n["resource_type"] == "model")
    if access:
        survey.add(
            "models by access",
            [f"{count} {level}" for level, count in sorted(access.items())],
            "public models are read by every domain (full product policies); protected "
            "(internal) and private ones stay the domain's own unless meta.consumers names "
            "other domains",
            counted=False,
        )
    groups = [
        f"{g['name']} (owner {(g.get('owner') or {}).get('name') or '?'})"
        for g in project.manifest.get("groups", {}).values()
        if g.get("package_name") == project.name
    ]
    survey.add("groups", groups, "the owner of their models' products")


def _project_level(survey: Survey, project: DomainDbtProject, settings: Mapping[str, Any]) -> None:
    macros = [
        m["name"]
        for m in project.manifest.get("macros", {}).values()
        if m.get("package_name") == project.name
    ]
    survey.add("macros", macros, "used by dbt as they are")
    variables = settings.get("vars") or {}
    survey.add(
        "vars",
        [str(name) for name in variables],
        "their defaults in dbt_project.yml are used (dagmesh passes no --vars)",
    )
    exposures = [e["name"] for e in project.manifest.get("exposures", {}).values()]
    survey.add(
        "exposures",
        exposures,
        "not adopted: the mesh shows no dbt exposures; a consumer outside the mesh reads the "
        "published port",
        adopted=False,
    )
    if project.profile_name != project.name:
        survey.add(
            "profile",
            [project.profile_name],
            "not read: dagmesh writes its own profile of that name (a DuckDB file per domain)",
        )
    if not IDENTIFIER.match(project.name):
        survey.add(
            "project name",
            [project.name],
            "not a safe identifier: used only inside dbt; the domain takes the name you give it",
        )


def survey(project: DomainDbtProject) -> Survey:
    """Read the prepared project: what each kind it holds becomes in the mesh."""
    settings = yaml.safe_load((project.project_dir / "dbt_project.yml").read_text()) or {}
    found = Survey(project.name)
    found.add("seeds", [product_name(n) for n in _own_nodes(project, "seed")], "products")
    _models(found, project)
    found.add(
        "snapshots",
        [product_name(n) for n in _own_nodes(project, "snapshot")],
        "products; their history stays in the domain's warehouse across runs",
    )
    _tests(found, project)
    _sources(found, project)
    _configs(found, project)
    _project_level(found, project, settings)
    return found
