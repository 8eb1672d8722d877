"""The marketing domain's Dagster code location."""

from dagmesh.definitions import domain_definitions
from domains.marketing.products import marketing

defs = domain_definitions(marketing)
