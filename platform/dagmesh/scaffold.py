"""Creating code locations: an existing dbt project becomes a domain.

``dagmesh new domain NAME --dbt-project PATH`` writes ``domains/NAME/`` (the
code location) and one workspace.yaml entry, and nothing inside the dbt
project. Everything is checked before anything is written, so a bad name or
a project that does not compile changes nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from dagmesh import config
from dagmesh.contracts.generate import sync
from dagmesh.dbt.project import DomainDbtProject
from dagmesh.product import check_identifier
from dagmesh.registry import load_domain, workspace_locations


class ScaffoldError(ValueError):
    """The domain cannot be created as asked; nothing was written."""


PRODUCTS_TEMPLATE = '''"""The {name} domain: the dbt project {dbt_path}, adopted as it is.

Its models, seeds and snapshots are the domain's products (key
``["{name}", <model>]``); its dbt tests are their checks.
"""

from dagmesh import Domain

{name} = Domain(
    "{name}",
    owner="{owner}",
    description={description},
    dbt_project="{dbt_path}",
)
'''

DEFINITIONS_TEMPLATE = '''"""The {name} domain's Dagster code location."""

from domains.{name}.products import {name}

defs = {name}.definitions()
'''

WORKSPACE_ENTRY = """  - python_module:
      module_name: domains.{name}.definitions
      location_name: {name}
"""


@dataclass
class NewDomain:
    """What ``new domain`` wrote and found."""

    name: str
    files: list[Path]
    products: list[str]
    tests: int


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root)
    except ValueError:
        raise ScaffoldError(f"{path} is outside the project {root}") from None


def _group_owner(project: DomainDbtProject) -> str | None:
    owners = {
        (group.get("owner") or {}).get("name")
        for group in project.manifest.get("groups", {}).values()
    }
    owners.discard(None)
    return owners.pop() if len(owners) == 1 else None


def new_dbt_domain(
    name: str, dbt_project: str | Path, owner: str | None = None, description: str | None = None
) -> NewDomain:
    """Turn the dbt project at ``dbt_project`` into the code location of a new
    domain ``name``. Raises ScaffoldError (having written nothing) when the
    name is not an identifier or is taken, or the project does not compile."""
    root = config.project_root()
    try:
        check_identifier(name, "domain")
    except ValueError as error:
        raise ScaffoldError(str(error)) from None
    package = root / "domains" / name
    if name in workspace_locations() or package.exists():
        raise ScaffoldError(f"domain {name!r} already exists (workspace.yaml or {package})")
    path = Path(dbt_project)
    path = _relative(path if path.is_absolute() else root / path, root)
    if not (root / path / "dbt_project.yml").is_file():
        raise ScaffoldError(f"{path} is not a dbt project: it has no dbt_project.yml")
    project = DomainDbtProject(name, path)
    project.prepare()  # raises DbtProjectError naming the file when it does not compile
    products = sorted(project.product_nodes())
    tests = sum(1 for n in project.manifest["nodes"].values() if n["resource_type"] == "test")

    owner = owner or _group_owner(project) or name
    description = description or f"The {name} domain, built by the dbt project {project.name}."
    files = {
        package / "__init__.py": "",
        package / "products.py": PRODUCTS_TEMPLATE.format(
            name=name, owner=owner, description=json.dumps(description), dbt_path=path.as_posix()
        ),
        package / "definitions.py": DEFINITIONS_TEMPLATE.format(name=name),
    }
    if not (root / "domains" / "__init__.py").exists():
        files[root / "domains" / "__init__.py"] = ""
    for file, text in files.items():
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    _add_workspace_entry(root / config.WORKSPACE_FILE, name)
    domain = load_domain(workspace_locations()[name])
    contracts = sync(domain)
    return NewDomain(name, [*files, root / config.WORKSPACE_FILE, *contracts], products, tests)


def _add_workspace_entry(workspace: Path, name: str) -> None:
    """Append the location to workspace.yaml, keeping its comments."""
    text = workspace.read_text() if workspace.exists() else ""
    if not (yaml.safe_load(text) or {}).get("load_from"):
        text = re.sub(r"^load_from:.*\n?", "", text, flags=re.MULTILINE) + "load_from:\n"
    if not text.endswith("\n"):
        text += "\n"
    workspace.write_text(text + WORKSPACE_ENTRY.format(name=name))
