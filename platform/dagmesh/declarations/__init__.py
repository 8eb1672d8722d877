"""Declarations: what a domain engineer writes and what the mesh reads of it.

Products, their specs, data contracts and dbt manifest metadata. Nothing here
imports Dagster or the engine: a declaration describes, it does not run.
"""
