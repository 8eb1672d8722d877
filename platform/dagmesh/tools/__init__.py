"""What people run: the ``dagmesh`` command line, the catalog, scaffolding and
the client of cross-domain materializations."""
