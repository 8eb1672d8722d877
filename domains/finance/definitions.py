"""The finance domain's Dagster code location."""

from domains.finance.products import finance

defs = finance.definitions()
