"""The shipping domain's Dagster code location."""

from domains.shipping.products import shipping

defs = shipping.definitions()
