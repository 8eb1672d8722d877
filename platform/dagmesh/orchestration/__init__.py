"""The Dagster layer: products as assets with checks, automation and alerts,
a domain's code location, the platform's own ``mesh`` location and the
cross-domain runner, and dbt projects through dagster-dbt."""
