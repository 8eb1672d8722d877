"""Sales: the web shop's orders, order lines and revenue."""
