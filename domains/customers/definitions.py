"""The customers domain's Dagster code location."""

from dagmesh.orchestration.definitions import domain_definitions
from domains.customers.products import customers

defs = domain_definitions(customers)
