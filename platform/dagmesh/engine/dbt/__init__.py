"""A domain's dbt project: its profile, manifest, adoption report and the
dbt-duckdb plugin that locks a run to its grant."""
