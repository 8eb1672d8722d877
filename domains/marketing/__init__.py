"""Marketing: CRM leads, what they turned into, and audiences for ad platforms."""
