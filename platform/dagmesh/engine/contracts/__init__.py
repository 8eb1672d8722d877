"""Data contracts at work: quality rules on staged data, contract files kept
in step with declarations, and breaking-change detection."""
