"""Finding methods by name: the built-in harness test methods, installed plugins (entry-point group
``brainvis_bench.plugins``: BrainVis and the baselines are such plugins) and whatever a run's
``--include`` / grid ``include`` loaded (:mod:`bench.plugins`). Classes register themselves with
:func:`bench.methods.base.register_method`."""

from __future__ import annotations

import importlib

from bench.errors import UserError
from bench.methods.base import METHODS, Method
from bench.plugins import load_entry_points

HARNESS_METHODS = "bench.methods.harness_tests"  # noop, sleep, burn: the harness's own test methods


_SCANNED = False


def load_builtin_methods() -> dict[str, type[Method]]:
    """Import the harness's test methods and every installed plugin (once per process); the registry."""
    global _SCANNED
    if not _SCANNED:
        importlib.import_module(HARNESS_METHODS)
        load_entry_points()
        _SCANNED = True
    return METHODS


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``; a :class:`UserError` listing the known ones otherwise."""
    if name not in METHODS:
        load_builtin_methods()
    if name not in METHODS:
        load_entry_points()  # a package installed since the first scan
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]
