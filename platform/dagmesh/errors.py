"""The base of every error dagmesh raises on purpose, so a tool can tell a
problem it explains (a product, a rule, a fix) from a bug.

Each subclass also derives from the built-in error it is (ValueError for bad
declarations, RuntimeError for things that went wrong, PermissionError for a
denied read), so callers that catch those keep working."""


class DagmeshError(Exception):
    """A problem dagmesh explains: its message names what and how to fix it."""
