"""Plugins: a researcher's own methods (and metrics) without editing the package.

A plugin reference is one of

- a folder: every ``*.py`` file directly in it is imported (as ``bench_plugin_<folder>_<stem>``);
- a ``.py`` file: imported the same way;
- a module path ``package.module`` (importable from ``sys.path``);
- ``package.module:Object``: the module is imported and ``Object`` resolved; a :class:`~bench.methods.base.Method`
  subclass that is not registered yet is registered.

Importing a module runs its ``@register_method`` / ``@register`` decorators. Installed packages can
also offer plugins through the entry-point group :data:`ENTRY_POINT_GROUP` (each entry point is a
reference as above, loaded when a name is not found among the registered methods).

``bench run --include REF`` and a grid's ``include = [...]`` pass references to the run; they travel
in the trial environment (:class:`bench.experiment.trial.RunEnv`), so every Ray actor (on any node) imports the
same plugins before it looks up its method. Folder and file references are made absolute first.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Iterable

from bench.errors import UserError
from bench.methods.base import METHODS, Method, register_method

__all__ = ["ENTRY_POINT_GROUP", "grid_plugins", "load_plugins", "load_entry_points", "normalise"]

ENTRY_POINT_GROUP = "brainvis_bench.plugins"
_LOADED: dict[str, object] = {}  # reference -> what it loaded (modules are imported once per process)
_MODULE_REF = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")


def normalise(ref: str, base: str | Path | None = None) -> str:
    """A reference as it travels to actors: folders and files absolute (relative to ``base``), module paths as given."""
    ref = str(ref).strip()
    if not ref:
        raise UserError("an empty plugin reference")
    p = Path(ref).expanduser()
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    if p.exists() or ref.endswith(".py") or "/" in ref:
        if not p.exists():
            raise UserError(f"plugin {ref}: no such file or folder ({p})")
        return str(p.resolve())
    if not _MODULE_REF.match(ref):
        raise UserError(f"plugin {ref!r}: not a folder, a .py file or a module path such as mypkg.methods or mypkg.methods:MyMethod")
    return ref


def _import_file(path: Path, prefix: str) -> object:
    name = f"bench_plugin_{prefix}{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"plugin {path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a plugin's own error, reported with its file
        del sys.modules[name]
        raise UserError(f"plugin {path}: {type(exc).__name__}: {exc}") from exc
    return module


def _load_one(ref: str) -> object:
    p = Path(ref)
    if p.is_dir():
        files = sorted(f for f in p.glob("*.py") if not f.name.startswith("_"))
        if not files:
            raise UserError(f"plugin folder {p}: no .py files")
        tag = re.sub(r"\W", "_", p.name) + "_"
        return [_import_file(f, tag) for f in files]
    if p.suffix == ".py" and p.is_file():
        return _import_file(p, re.sub(r"\W", "_", p.parent.name) + "_")
    module_name, _, obj_name = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UserError(f"plugin {ref}: module {module_name!r} not found ({exc})") from exc
    if not obj_name:
        return module
    obj = module
    for part in obj_name.split("."):
        if not hasattr(obj, part):
            raise UserError(f"plugin {ref}: {module_name} has no attribute {obj_name!r}")
        obj = getattr(obj, part)
    if isinstance(obj, type) and issubclass(obj, Method) and METHODS.get(getattr(obj, "name", None)) is not obj:
        register_method(obj)
    return obj


def load_plugins(refs: Iterable[str]) -> list[str]:
    """Import every reference (once per process); returns the references loaded by this call."""
    done = []
    for ref in refs:
        if ref in _LOADED:
            continue
        _LOADED[ref] = _load_one(ref)
        done.append(ref)
    return done


def grid_plugins(grid, include: Iterable[str] | None = None) -> tuple[str, ...]:
    """A run's plugin references: the grid's ``include`` (relative to its file), then ``include``
    (``--include``, relative to the working folder), normalised and imported here; installed plugins
    (entry points) are loaded too. Actors import the returned references again."""
    source = getattr(grid, "source", None) if grid is not None else None
    base = Path(source).parent if source and Path(source).is_file() else Path.cwd()
    grid_refs = [normalise(r, base) for r in getattr(grid, "include", ())] if grid is not None else []
    refs = tuple(dict.fromkeys(grid_refs + [normalise(r, Path.cwd()) for r in include or []]))
    load_entry_points()
    load_plugins(refs)
    return refs


def load_entry_points() -> list[str]:
    """Load the plugins installed packages declare under :data:`ENTRY_POINT_GROUP`."""
    from importlib.metadata import entry_points

    refs = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value in _LOADED:
            continue
        try:
            _LOADED[ep.value] = ep.load()
        except Exception as exc:  # noqa: BLE001 - one broken package must not hide the others
            raise UserError(f"plugin entry point {ep.name} ({ep.value}) of group {ENTRY_POINT_GROUP}: {type(exc).__name__}: {exc}") from exc
        obj = _LOADED[ep.value]
        if isinstance(obj, type) and issubclass(obj, Method) and METHODS.get(getattr(obj, "name", None)) is not obj:
            register_method(obj)
        refs.append(ep.value)
    return refs
