"""Customers: who our customers are, and everything we know about each of them."""
