"""The marketing domain's Dagster code location."""

from domains.marketing.products import marketing

defs = marketing.definitions()
