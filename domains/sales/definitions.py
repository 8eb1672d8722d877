"""The sales domain's Dagster code location."""

from dagmesh.orchestration.definitions import domain_definitions
from domains.sales.products import sales

defs = domain_definitions(sales)
