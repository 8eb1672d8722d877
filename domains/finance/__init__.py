"""Finance: what late deliveries cost the bottom line."""
