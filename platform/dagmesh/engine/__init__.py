"""The engine: landing, building, checking, masking, publishing and storing
data products, and the mesh's policies. It runs on DuckDB (and dbt) and knows
nothing of Dagster, so every kind of product shares one write–audit–publish
path whatever orchestrates it.
"""
