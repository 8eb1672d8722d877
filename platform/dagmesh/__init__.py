"""dagmesh: a data-mesh platform on Dagster.

A domain describes its products; the platform makes them Dagster assets with
contracts checked before an atomic publish to a versioned output port::

    from dagmesh import Column, Domain, Landing

    sales = Domain("sales", owner="sales", description="The web shop's orders.")
    sales.sql_product("daily_revenue", description=..., columns=[...],
                      consumes=["orders", "order_items"], sql="SELECT ...")
"""

from dagmesh.declarations.product import Column, Domain, Landing, Product, pii
from dagmesh.engine.context import ProductContext

__all__ = ["Column", "Domain", "Landing", "Product", "ProductContext", "pii"]
