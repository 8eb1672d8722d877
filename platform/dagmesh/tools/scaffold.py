"""Scaffolding: new domains (Python, or an existing dbt project) and new products.

- ``dagmesh new domain NAME`` writes ``domains/NAME/`` (the code location)
  with a first product, its contract and a test, plus one workspace.yaml
  entry; ``--dbt-project PATH`` adopts an existing dbt project instead and
  writes nothing inside it.
- ``dagmesh new product DOMAIN NAME --sql|--python|--dbt`` adds a product
  (and its contract) to a domain.

Everything is checked before anything is written, so a bad or taken name,
or a project that does not compile, changes nothing. What is written passes
``dagmesh lint``; its starter query is meant to be replaced.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from dagmesh import config
from dagmesh.declarations.product import check_identifier
from dagmesh.engine.contracts.generate import contract_path, sync
from dagmesh.engine.dbt.adoption import Survey, refuse_packages, survey
from dagmesh.engine.dbt.project import DomainDbtProject, dbt_project
from dagmesh.engine.specs import product_names
from dagmesh.engine.workspace import load_domain, workspace_locations
from dagmesh.errors import DagmeshError


class ScaffoldError(DagmeshError, ValueError):
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

from dagmesh.orchestration.definitions import domain_definitions

from domains.{name}.products import {name}

defs = domain_definitions({name})
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
    survey: Survey | None = None


@contextmanager
def _undone_on_error(files: list[Path], folders: list[Path] = ()) -> Iterator[None]:
    """Restore ``files`` (or delete those that did not exist) and delete the
    new ``folders`` if the block fails: a scaffold that fails half-way (a
    full disk, a file name the file system refuses, a load error) leaves the
    project as it was, never a domain that no longer loads."""
    saved = {f: f.read_bytes() if f.is_file() else None for f in files}
    new_folders = [d for d in folders if not d.exists()]
    try:
        yield
    except BaseException:
        for file, content in saved.items():
            if content is None:
                file.unlink(missing_ok=True)
            else:
                file.write_bytes(content)
        for folder in new_folders:
            shutil.rmtree(folder, ignore_errors=True)
        raise


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
    name: str,
    dbt_project: str | Path,
    owner: str | None = None,
    description: str | None = None,
    report: Callable[[Survey], None] | None = None,
) -> NewDomain:
    """Turn the dbt project at ``dbt_project`` into the code location of a new
    domain ``name``; ``report`` is given what adoption makes of each kind of
    thing the project holds before anything is written. Raises ScaffoldError
    or DbtProjectError (having written nothing) when the name is not an
    identifier or is taken, the project needs dbt packages or does not compile."""
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
    refuse_packages(root / path)  # before dbt runs: it would ask for `dbt deps`
    project = DomainDbtProject(name, path)
    project.prepare()  # raises DbtProjectError naming the file when it does not compile
    found = survey(project)
    if report is not None:
        report(found)  # what adoption makes of the project, before anything is written
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
    with _undone_on_error(_touched(root, files), [package]):
        domain, written = _write_location(root, name, files)
        written += sync(domain)
    return NewDomain(name, written, products, tests, found)


def _touched(root: Path, files: dict[Path, str]) -> list[Path]:
    """Every file writing a new location may create or change."""
    return [*files, root / "domains" / "__init__.py", root / config.WORKSPACE_FILE]


def _write_location(root: Path, name: str, files: dict[Path, str]):
    """Write a new location's ``files`` and workspace entry; returns its
    Domain and every file written."""
    if not (root / "domains" / "__init__.py").exists():
        files[root / "domains" / "__init__.py"] = ""
    for file, text in files.items():
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    _add_workspace_entry(root / config.WORKSPACE_FILE, name)
    return load_domain(workspace_locations()[name]), [*files, root / config.WORKSPACE_FILE]


def _add_workspace_entry(workspace: Path, name: str) -> None:
    """Append the location to workspace.yaml, keeping its comments."""
    text = workspace.read_text() if workspace.exists() else ""
    if not (yaml.safe_load(text) or {}).get("load_from"):
        text = re.sub(r"^load_from:.*\n?", "", text, flags=re.MULTILINE) + "load_from:\n"
    if not text.endswith("\n"):
        text += "\n"
    workspace.write_text(text + WORKSPACE_ENTRY.format(name=name))


PYTHON_DOMAIN_TEMPLATE = '''"""The {name} domain: {description}"""

from dagmesh import Column, Domain
from dagmesh.orchestration.automation import on_cron

{name} = Domain("{name}", owner="{owner}", description={description_literal})

{name}.sql_product(
    "calendar",
    description="One row per day of this year and the next, with its ISO week: the "
    "domain's first product, to join its dated facts on.",
    classification="internal",
    columns=[
        Column("day", "DATE", "The calendar day.", nullable=False),
        Column("iso_week", "INTEGER", "ISO 8601 week number.", nullable=False),
        Column("is_weekend", "BOOLEAN", "Saturday or Sunday.", nullable=False),
    ],
    primary_key="day",
    refresh=on_cron("0 0 1 1 *"),  # once a year
    sql="""
        SELECT
            day::DATE AS day,
            weekofyear(day)::INTEGER AS iso_week,
            dayofweek(day) IN (0, 6) AS is_weekend
        FROM range(
            date_trunc('year', current_date),
            date_trunc('year', current_date) + INTERVAL 2 YEAR,
            INTERVAL 1 DAY
        ) AS t(day)
    """,
)
'''

DOMAIN_TEST_TEMPLATE = '''"""The {name} domain's first product, built for real.

Written by `dagmesh new domain`: extend it as the domain grows.
"""

from dagmesh.engine.build import build_product
from dagmesh.engine.contracts.generate import effective_contract
from dagmesh.orchestration.resources import MeshStorage
from dagmesh.declarations.spec import python_spec
from domains.{name}.products import {name}


def test_calendar_publishes_under_its_contract(tmp_path):
    product = {name}.products["calendar"]
    contract = effective_contract({name}, python_spec(product))
    assert contract is not None and contract.freshness is not None
    mesh = MeshStorage(home=str(tmp_path))
    result = build_product(product, mesh, "test-run", contract=contract)
    assert result.published, result.failure_message
    assert result.rows >= 2 * 365
'''

SQL_PRODUCT_TEMPLATE = """

{domain}.sql_product(
    "{name}",
    description={description},
    classification="internal",
    columns=[Column("id", "BIGINT", "Identifier.", nullable=False)],
    primary_key="id",
    # Starter query: replace it. Inputs named in consumes= and sources= are tables.
    sql="SELECT range AS id FROM range(10)",
)
"""

PYTHON_PRODUCT_TEMPLATE = '''

@{domain}.python_product(
    description={description},
    classification="internal",
    columns=[Column("id", "BIGINT", "Identifier.", nullable=False)],
    primary_key="id",
)
def {name}(ctx):
    """Starter computation: replace it. ``ctx.input(alias)`` and ``ctx.sql(...)``
    read the inputs; return a DuckDB relation, a pandas DataFrame or an Arrow table."""
    return ctx.sql("SELECT range AS id FROM range(10)")
'''

DBT_MODEL_TEMPLATE = """-- Starter model: replace it (other domains' products: sources in `ports`).
select range::bigint as id from range(10)
"""

DBT_YML_TEMPLATE = """models:
  - name: {name}
    description: {description}
    config:
      access: public
      meta: {{classification: internal, dagmesh: {{refresh: upstream}}}}
    columns:
      - name: id
        description: Identifier.
        data_type: bigint
        data_tests: [not_null, unique]
"""

STARTER_SLA = [
    {"property": "latency", "value": 1, "unit": "d", "description": "Published at least daily."}
]
STARTER_RULES = [
    {"rule": "rowCount", "mustBeGreaterThan": 0, "description": "A version is never empty."}
]


def _new_name(name: str, what: str) -> str:
    if what == "domain" and name == config.MESH_LOCATION:
        raise ScaffoldError(
            f"{name!r} is the platform's own code location (cross-domain materializations); "
            "choose another domain name"
        )
    try:
        return check_identifier(name, what)
    except ValueError as error:
        raise ScaffoldError(str(error)) from None


def _starter_contract(domain, product: str) -> Path:
    """Generate the product's contract and give it a starter SLA and rule."""
    from dagmesh.engine.contracts.generate import contract_path, dump, read_file

    sync(domain)
    path = contract_path(domain, product)
    document = read_file(path)
    document["slaProperties"] = STARTER_SLA
    document["schema"][0]["quality"] = STARTER_RULES
    path.write_text(dump(document, f"{domain.name}/{product}"))
    return path


def new_python_domain(
    name: str, owner: str | None = None, description: str | None = None
) -> NewDomain:
    """Create the Python domain ``name``: its package with a first product
    (``calendar``), that product's contract and a test, and its workspace
    entry. Raises ScaffoldError, having written nothing, for a bad or taken name."""
    root = config.project_root()
    _new_name(name, "domain")
    package = root / "domains" / name
    if name in workspace_locations() or package.exists():
        raise ScaffoldError(f"domain {name!r} already exists (workspace.yaml or {package})")
    description = description or f"The {name} domain."
    files = {
        package / "__init__.py": "",
        package / "products.py": PYTHON_DOMAIN_TEMPLATE.format(
            name=name,
            owner=owner or name,
            description=description,
            description_literal=json.dumps(description),
        ),
        package / "definitions.py": DEFINITIONS_TEMPLATE.format(name=name),
        root / "tests" / f"test_domain_{name}.py": DOMAIN_TEST_TEMPLATE.format(name=name),
    }
    with _undone_on_error(_touched(root, files), [package]):
        domain, written = _write_location(root, name, files)
        written.append(_starter_contract(domain, "calendar"))
    return NewDomain(name, written, ["calendar"], 0)


def new_product(
    domain_name: str, name: str, kind: str, description: str | None = None
) -> list[Path]:
    """Add a ``kind`` (sql, python or dbt) product ``name`` to a domain, with
    its contract; returns the files written. Raises ScaffoldError, having
    written nothing, when the domain is unknown, the name bad or taken, or
    ``dbt`` is asked of a domain without a dbt project."""
    import importlib

    locations = workspace_locations()
    if domain_name not in locations:
        raise ScaffoldError(f"no domain {domain_name!r} (domains: {sorted(locations)})")
    _new_name(name, "product")
    domain = load_domain(locations[domain_name])
    if name in product_names(domain):
        raise ScaffoldError(f"{domain_name}/{name} already exists")
    description = description or f"The {name} product of the {domain_name} domain."
    if kind == "dbt":
        project = dbt_project(domain)
        if project is None:
            raise ScaffoldError(f"domain {domain_name!r} has no dbt project: use --sql or --python")
        models = project.project_dir / "models"
        touched = [models / f"{name}.sql", models / f"{name}.yml"]
    else:
        module = importlib.import_module(f"{locations[domain_name].package}.products")
        touched = [Path(module.__file__)]
    contract = contract_path(domain, name)
    with _undone_on_error([*touched, contract]):
        if kind == "dbt":
            written = _write_dbt_model(project, name, description)
        else:
            written = _append_product(module, domain.name, name, kind, description)
            domain = load_domain(locations[domain_name])
        written.append(_starter_contract(domain, name))
    return written


def _write_dbt_model(project: DomainDbtProject, name: str, description: str) -> list[Path]:
    """A starter model and its yml; the project is parsed again."""
    models = project.project_dir / "models"
    sql_file, yml_file = models / f"{name}.sql", models / f"{name}.yml"
    if sql_file.exists() or yml_file.exists():
        raise ScaffoldError(f"{sql_file} or {yml_file} already exists")
    sql_file.write_text(DBT_MODEL_TEMPLATE)
    yml_file.write_text(DBT_YML_TEMPLATE.format(name=name, description=json.dumps(description)))
    project.prepare()  # and read the new manifest
    return [sql_file, yml_file]


def _append_product(module, domain: str, name: str, kind: str, description: str) -> list[Path]:
    """Append a starter SQL or Python product to the domain's products.py."""
    import importlib

    template = SQL_PRODUCT_TEMPLATE if kind == "sql" else PYTHON_PRODUCT_TEMPLATE
    products_file = Path(module.__file__)
    text = products_file.read_text()
    if not re.search(r"^from dagmesh import .*\bColumn\b", text, flags=re.MULTILINE):
        text = text.replace("from dagmesh import ", "from dagmesh import Column, ", 1)
    products_file.write_text(
        text + template.format(domain=domain, name=name, description=json.dumps(description))
    )
    importlib.reload(module)
    return [products_file]
