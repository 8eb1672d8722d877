"""A domain's dbt project as Dagster assets: the translator, the multi-asset
and its write–audit–publish run."""
