"""The marketing domain's Dagster code location."""

from dagmesh.orchestration.definitions import domain_definitions
from domains.marketing.products import marketing

defs = domain_definitions(marketing)
