"""The finance domain's Dagster code location."""

from dagmesh.orchestration.definitions import domain_definitions
from domains.finance.products import finance

defs = domain_definitions(finance)
