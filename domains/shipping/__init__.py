"""Shipping: what left the warehouse, what came back, and how late it arrived."""
