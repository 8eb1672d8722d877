"""The customers domain's Dagster code location."""

from domains.customers.products import customers

defs = customers.definitions()
