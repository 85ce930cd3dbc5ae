"""`bench methods list` / `bench methods show NAME`: what a grid's method axis may name."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from bench.errors import UserError

console = Console()


def _fmt(value: Any) -> str:
    """JSON where the value is plain data, else its name (e.g. a braindecode default ``nn.ELU``)."""
    try:
        return json.dumps(value)
    except TypeError:
        return getattr(value, "__name__", repr(value))


def method_rows() -> list[dict[str, Any]]:
    """One plain dict per registered method, in registry order (EEG methods, then reference rows,
    then harness tests)."""
    from bench.methods.base import METHODS
    from bench.methods.registry import load_builtin_methods

    load_builtin_methods()
    order = {"EEG method": 0, "reference row": 1, "harness test": 2}
    rows = [
        {
            "name": name,
            "kind": cls.kind,
            "uses_w": bool(cls.uses_w),
            "uses_fraction": bool(cls.uses_fraction),
            "needs_generator": bool(cls.needs_generator),
            "description": cls.description,
            "source": cls.source,
            "module": cls.__module__,
        }
        for name, cls in METHODS.items()
    ]
    return sorted(rows, key=lambda r: (order.get(r["kind"], 3), r["name"]))


def method_config(name: str, profile: str) -> list[dict[str, Any]]:
    """The method's hyperparameters: code default, the profile's value (if it sets one) and where
    the value a trial gets comes from."""
    from bench.experiment.run import load_profile
    from bench.methods.registry import get_method

    cls = get_method(name)
    section = {k: v for k, v in load_profile(profile).get(name, {}).items()}
    defaults = cls.defaults()
    rows = []
    for key, default in defaults.items():
        in_profile = key in section
        rows.append(
            {
                "key": key,
                "value": section[key] if in_profile else default,
                "default": default,
                "from": f"profile {profile}" if in_profile else "code default",
            }
        )
    for key in section.keys() - defaults.keys():
        rows.append({"key": key, "value": section[key], "default": None, "from": f"profile {profile} (not a known key: a trial would fail)"})
    return rows


def register(app: typer.Typer) -> None:
    """Add ``bench methods`` to ``app``."""
    methods_app = typer.Typer(no_args_is_help=True, help="List the registered methods and show their hyperparameters.")
    app.add_typer(methods_app, name="methods")

    @methods_app.command("list")
    def methods_list(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
        """Every method a grid may name: kind, whether it has a w axis and needs the generator, description, source."""
        rows = method_rows()
        if as_json:
            console.print_json(json.dumps(rows))
            return
        table = Table(title="methods (name them on a grid's method axis)")
        for col in ("name", "kind", "uses w", "generator", "description", "source"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(r["name"], r["kind"], "yes" if r["uses_w"] else "", "yes" if r["needs_generator"] else "", r["description"], r["source"])
        console.print(table)

    @methods_app.command("show")
    def methods_show(
        name: str = typer.Argument(..., help="Method name (see `bench methods list`)."),
        profile: str = typer.Option("mini", "--profile", help="Profile whose values to show: mini or paper."),
    ) -> None:
        """A method's description, source and hyperparameters (code default, profile value, and which one a trial gets)."""
        from bench.experiment.grid import PROFILES
        from bench.methods.registry import get_method

        if profile not in PROFILES:
            raise UserError(f"--profile must be one of {', '.join(PROFILES)}; got {profile!r}")
        cls = get_method(name)
        info = next(r for r in method_rows() if r["name"] == name)
        console.print(f"[bold]{name}[/] ({info['kind']}; {info['module']})", highlight=False)
        console.print(cls.description, highlight=False)
        console.print(f"source: {cls.source}", highlight=False)
        flags = [f"w axis: {'yes' if info['uses_w'] else 'no (collapses to 0.5)'}",
                 f"fraction axis: {'yes' if info['uses_fraction'] else 'no (runs at 1.0)'}",
                 f"generator: {'yes' if info['needs_generator'] else 'no'}"]  # fmt: skip
        console.print("; ".join(flags), highlight=False)
        rows = method_config(name, profile)
        if not rows:
            console.print("no hyperparameters", highlight=False)
            return
        table = Table(title=f"hyperparameters with profile {profile} (bench/profiles/{profile}.toml [{name}]; a grid variant's options override them per trial)")
        for col in ("key", "value", "code default", "from"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["key"], _fmt(r["value"]), _fmt(r["default"]), r["from"])
        console.print(table)
