"""The sales domain's Dagster code location."""

from domains.sales.products import sales

defs = sales.definitions()
