"""Every product of a domain as a :class:`~dagmesh.declarations.spec.ProductSpec`:
its Python declarations and the models its dbt project builds."""

from __future__ import annotations

from dagmesh.declarations.product import Domain
from dagmesh.declarations.spec import ProductSpec, dbt_spec, python_spec
from dagmesh.engine.dbt.project import dbt_project


def domain_specs(domain: Domain) -> dict[str, ProductSpec]:
    """Every product of ``domain`` (declared in Python and built by its dbt
    project), by name."""
    specs = {name: python_spec(p) for name, p in domain.products.items()}
    project = dbt_project(domain)
    if project is not None:
        manifest = project.manifest
        for name, node in project.product_nodes().items():
            specs[name] = dbt_spec(domain, node, manifest, project.project_dir)
    return specs


def product_names(domain: Domain) -> set[str]:
    """Every product of ``domain``: declared in Python, and its dbt project's
    (raises DbtProjectError if the dbt project does not compile)."""
    names = set(domain.products)
    project = dbt_project(domain)
    if project is not None:
        names |= set(project.product_nodes())
    return names
