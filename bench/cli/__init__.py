"""The `bench` command line: a thin face over the library (:mod:`bench.cli.app` holds the app)."""
