"""The shipping domain's Dagster code location."""

from dagmesh.orchestration.definitions import domain_definitions
from domains.shipping.products import shipping

defs = domain_definitions(shipping)
