"""Experiment grids as data: TOML files (shipped ones under ``bench/grids/``, or a user's own file).

A grid file::

    description = "one line shown by `bench grid list`"
    note = "optional longer remark"          # optional
    profile = "mini"                          # mini | paper (the run's --profile overrides it)

    [axes]
    method = ["brainvis", "chance"]           # required
    subject = [1, 4]                          # 0 = all subjects pooled
    fraction = [1.0]                          # training-data fraction, in (0, 1]
    w = [0.5]                                 # semantic interpolation weight, in [0, 1]
    seed = [0]

    [options.eegnet]                          # optional: a method's hyperparameters for this grid
    epochs = 30                               # (keys of `bench methods show eegnet`; variants' options win)

    [[variants]]                              # optional named option sets
    name = "no_time"
    options = { use_time = false }
    methods = ["brainvis"]                    # optional; default: every method of the grid
    w = [0.0, 0.5]                            # optional; this variant's own w axis

    worlds = [{ scale = "mini" },             # optional: synthetic worlds to run on in turn (no --data)
              { scale = "mini", effects = { induced_class = 0 }, variants = ["full", "no_freq"], raw_file = false,
                generate = false, w = [0.5] }]      # a world's generate overrides the grid's (here: classification only),
                                                    # its w axis every variant's (w matters only where images are drawn),
                                                    # its fraction axis (fraction = [0.25]) the grid's; a world may be listed
                                                    # more than once (e.g. with other variants at another fraction)

    [[checks]]                                # optional known-answer checks (bench.evaluation.known_answers)
    name = "frequency branch"
    effect = "induced_class"                  # planted on the first world, off on its null world
    a = { variant = "full" }                  # method (default: the grid's first), variant, w
    b = { variant = "no_freq" }
    metric = "top1"
    expect = "positive"                       # a - b > 0 where planted
    null = "none"                             # null world: no difference ("none"), no gain ("no_gain": harm allowed)
                                              # or the same gain ("gain": the effect does not need the switched-off one)

A method covered by one or more variants runs once per variant (with that variant's options);
other methods run once with no options. For methods whose class has ``uses_w = False`` the ``w``
axis collapses to the single value 0.5, and for methods with ``uses_fraction = False`` (reference
rows: they do not train on EEG) the fraction axis collapses to 1.0. Expansion order is deterministic: method, variant, subject,
fraction, w, seed (each in the order written); duplicates are dropped.

Value checks (:func:`check_values`) need nothing but the file; method names are checked against the
registry (:func:`method_problems`) and subjects against the dataset (:func:`check_subjects`) when a
run starts. Every check lists every bad value in one :class:`~bench.errors.UserError`.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from bench.evaluation.known_answers import NULL_FAILS
from bench.methods.base import TrialSpec
from bench.errors import UserError
from bench.paths import GRIDS_DIR

PROFILES = ("mini", "paper")
NO_W = 0.5  # the w value trials of methods without a w axis get
TOP_KEYS = {"description", "note", "profile", "axes", "variants", "worlds", "generate", "checks", "include", "options"}
WORLD_KEYS = {"scale", "seed", "block_drift", "effects", "raw_file", "variants", "name", "generate", "w", "fraction"}
AXIS_KEYS = {"method", "subject", "fraction", "w", "seed", "profile"}
VARIANT_KEYS = {"name", "options", "methods", "w"}
CHECK_KEYS = {"name", "effect", "a", "b", "metric", "expect", "null"}
CHECK_NULLS = tuple(NULL_FAILS)  # what a check's null world should show: "none", "no_gain", "gain" (bench.evaluation.known_answers)
SIDE_KEYS = {"method", "variant", "w"}
DEFAULTS: dict[str, list] = {"subject": [4], "fraction": [1.0], "w": [NO_W], "seed": [0]}


@dataclass(frozen=True)
class Variant:
    """A named option set applied to some methods (``methods=None``: all methods of the grid);
    ``ws``: the variant's own w axis (None: the grid's)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    methods: tuple[str, ...] | None = None
    ws: tuple[float, ...] | None = None

    def applies_to(self, method: str) -> bool:
        return self.methods is None or method in self.methods


@dataclass(frozen=True)
class Grid:
    name: str
    description: str = ""
    methods: tuple = ()
    subjects: tuple = (4,)
    fractions: tuple = (1.0,)
    ws: tuple = (NO_W,)
    seeds: tuple = (0,)
    profile: Any = "mini"
    variants: tuple[Variant, ...] = ()
    note: str = ""
    source: str = ""  # file the grid was read from
    worlds: tuple[dict, ...] = ()  # synthetic worlds to run on in turn (used when no --data is given)
    generate: bool = True  # False: classification only (no backbones, no images)
    checks: tuple[dict, ...] = ()  # known-answer checks (see bench.evaluation.known_answers)
    include: tuple[str, ...] = ()  # plugin references (bench.plugins), folders and files relative to the grid file
    options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()  # [options.<method>]: hyperparameters per method

    def method_options(self, method: str) -> dict[str, Any]:
        """The grid's ``[options.<method>]`` for ``method`` ({} if none)."""
        return dict(dict(self.options).get(method, ()))

    def world_generates(self, world: dict | None) -> bool:
        """Whether trials on ``world`` generate images (a world's ``generate`` overrides the grid's)."""
        return bool((world or {}).get("generate", self.generate))

    def world_variants(self, world: dict | None) -> tuple[str, ...] | None:
        """The variants that run on ``world`` (None: all)."""
        v = (world or {}).get("variants")
        return tuple(v) if v is not None else None

    def world_ws(self, world: dict | None) -> tuple[float, ...] | None:
        """The w axis of every variant on ``world`` (None: the variants' and the grid's own)."""
        w = (world or {}).get("w")
        return tuple(float(x) for x in w) if w is not None else None

    def world_fractions(self, world: dict | None) -> tuple[float, ...]:
        """The fraction axis on ``world`` (its own, else the grid's)."""
        f = (world or {}).get("fraction")
        return tuple(float(x) for x in f) if f is not None else tuple(self.fractions)

    def axes(self) -> dict[str, list]:
        return {
            "method": list(self.methods),
            "subject": list(self.subjects),
            "fraction": list(self.fractions),
            "w": list(self.ws),
            "seed": list(self.seeds),
            "profile": [self.profile],
        }

    def with_overrides(
        self,
        *,
        methods: list[str] | None = None,
        subjects: list[int] | None = None,
        seeds: list[int] | None = None,
        fractions: list[float] | None = None,
        ws: list[float] | None = None,
        profile: str | None = None,
    ) -> "Grid":
        """The grid with some axes replaced (command-line overrides); values are not checked here."""
        changes: dict[str, Any] = {}
        for name, value in (("methods", methods), ("subjects", subjects), ("seeds", seeds), ("fractions", fractions), ("ws", ws)):
            if value:
                changes[name] = tuple(value)
        if profile:
            changes["profile"] = profile
        return replace(self, **changes)


# ----------------------------------------------------------------------------------------------
# Finding and reading grids
# ----------------------------------------------------------------------------------------------




def _shipped_dir() -> Path:
    return GRIDS_DIR


def shipped_grids() -> list[str]:
    """Names of the grids that ship with the package, sorted."""
    return sorted(p.name[: -len(".toml")] for p in _shipped_dir().iterdir() if p.name.endswith(".toml"))


def load_grid(name_or_path: str | Path, *, check: bool = True) -> Grid:
    """A shipped grid by name, or a grid file by path. Reads the file's structure; ``check``: its values too."""
    text, name, source = _read(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"grid {source}: not valid TOML ({exc})") from exc
    grid = parse_grid(data, name=name, source=source)
    if check:
        check_values(grid)
    return grid


def _read(name_or_path: str | Path) -> tuple[str, str, str]:
    s = str(name_or_path)
    path = Path(s).expanduser()
    looks_like_path = s.endswith(".toml") or "/" in s or "\\" in s
    if looks_like_path or path.is_file():
        if not path.is_file():
            raise UserError(f"grid file {path} not found")
        try:
            return path.read_text(encoding="utf-8"), path.stem, str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"grid file {path} is not readable: {exc}") from exc
    entry = _shipped_dir() / f"{s}.toml"
    if not entry.is_file():
        raise UserError(f"unknown grid {s!r}; shipped grids: {', '.join(shipped_grids())} (or pass a path to a .toml file)")
    return entry.read_text(encoding="utf-8"), s, f"bench/grids/{s}.toml"


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_grid(data: dict, *, name: str = "grid", source: str = "<data>") -> Grid:
    """Structure only (keys and shapes); see :func:`check_values` for the values."""
    problems: list[str] = []
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {unknown} (allowed: {sorted(TOP_KEYS)})")
    axes = data.get("axes", {})
    if not isinstance(axes, dict):
        problems.append("[axes] must be a table")
        axes = {}
    unknown = sorted(set(axes) - AXIS_KEYS)
    if unknown:
        problems.append(f"unknown axis key(s) {unknown} (allowed: {sorted(AXIS_KEYS)})")
    if "profile" in axes and "profile" in data:
        problems.append("profile given both at the top level and in [axes]")
    methods = _as_list(axes.get("method", []))
    if not methods:
        problems.append("[axes] method: at least one method is required")
    profile = axes.get("profile", data.get("profile", "mini"))
    if isinstance(profile, list):
        if len(profile) != 1:
            problems.append(f"profile: a run uses one profile, got {profile!r} (run once per profile)")
        profile = profile[0] if profile else "mini"

    variants: list[Variant] = []
    raw_variants = data.get("variants", [])
    if not isinstance(raw_variants, list):
        problems.append("variants must be an array of tables ([[variants]])")
        raw_variants = []
    seen: set[str] = set()
    for i, v in enumerate(raw_variants):
        if not isinstance(v, dict):
            problems.append(f"variants[{i}] must be a table")
            continue
        unknown = sorted(set(v) - VARIANT_KEYS)
        if unknown:
            problems.append(f"variants[{i}]: unknown key(s) {unknown} (allowed: {sorted(VARIANT_KEYS)})")
        vname = v.get("name")
        if not isinstance(vname, str) or not vname:
            problems.append(f"variants[{i}]: name must be a non-empty string")
            continue
        if vname in seen:
            problems.append(f"variant {vname!r} defined twice")
        seen.add(vname)
        options = v.get("options", {})
        if not isinstance(options, dict):
            problems.append(f"variant {vname!r}: options must be a table")
            options = {}
        vm = v.get("methods")
        if vm is not None:
            vm = _as_list(vm)
            stray = [m for m in vm if m not in methods]
            if stray:
                problems.append(f"variant {vname!r}: methods {stray} are not on the grid's method axis")
        vw = v.get("w")
        if vw is not None:
            vw = _as_list(vw)
            if not vw or not all(_is_num(x) and 0 <= x <= 1 for x in vw):
                problems.append(f"variant {vname!r}: w must be values in [0, 1]")
        variants.append(Variant(vname, dict(options), tuple(vm) if vm is not None else None, tuple(float(x) for x in vw) if vw else None))
    worlds = data.get("worlds", [])
    if not isinstance(worlds, list) or not all(isinstance(w, dict) for w in worlds):
        problems.append("worlds must be an array of tables, e.g. worlds = [{ block_drift = true }]")
        worlds = []
    for i, w in enumerate(worlds):
        unknown = sorted(set(w) - WORLD_KEYS)
        if unknown:
            problems.append(f"worlds[{i}]: unknown key(s) {unknown} (allowed: {sorted(WORLD_KEYS)})")
        if "effects" in w and not isinstance(w["effects"], dict):
            problems.append(f"worlds[{i}]: effects must be a table, e.g. effects = {{ induced_class = 0 }}")
        elif "effects" in w:
            from bench.world.spec import parse_effects

            try:
                parse_effects(w["effects"])
            except UserError as exc:
                problems.append(f"worlds[{i}]: {exc}")
        if not isinstance(w.get("generate", True), bool):
            problems.append(f"worlds[{i}]: generate must be true or false")
        ww = w.get("w")
        if ww is not None and (not isinstance(ww, list) or not ww or any(isinstance(x, bool) or not isinstance(x, int | float) or not 0 <= x <= 1 for x in ww)):
            problems.append(f"worlds[{i}]: w must be a non-empty list of weights in [0, 1]")
        wf = w.get("fraction")
        if wf is not None and (not isinstance(wf, list) or not wf or any(not _is_num(x) or not 0 < x <= 1 for x in wf)):
            problems.append(f"worlds[{i}]: fraction must be a non-empty list of fractions in (0, 1]")
        wv = w.get("variants")
        if wv is not None and (not isinstance(wv, list) or any(x not in seen for x in wv)):
            problems.append(f"worlds[{i}]: variants must list variants of the grid ({', '.join(sorted(seen)) or 'none defined'})")
    checks = data.get("checks", [])
    if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
        problems.append("checks must be an array of tables ([[checks]])")
        checks = []
    from bench.world.effects import EFFECTS

    for i, c in enumerate(checks):
        unknown = sorted(set(c) - CHECK_KEYS)
        if unknown:
            problems.append(f"checks[{i}]: unknown key(s) {unknown} (allowed: {sorted(CHECK_KEYS)})")
        for side in ("a", "b"):
            sd = c.get(side)
            if not isinstance(sd, dict) or sorted(set(sd) - SIDE_KEYS):
                problems.append(f"checks[{i}].{side}: a table with some of {sorted(SIDE_KEYS)}")
            elif sd.get("variant") is not None and sd["variant"] not in seen:
                problems.append(f"checks[{i}].{side}: unknown variant {sd['variant']!r}")
        if not isinstance(c.get("metric"), str) or c.get("expect", "positive") not in ("positive", "negative"):
            problems.append(f"checks[{i}]: metric (a metric name) and expect ('positive' or 'negative') are required")
        if c.get("null", "none") not in CHECK_NULLS:
            problems.append(f"checks[{i}]: null must be one of {', '.join(map(repr, CHECK_NULLS))}")
        if c.get("effect") not in EFFECTS:
            problems.append(f"checks[{i}]: effect must be one of {', '.join(EFFECTS)}")
    generate = data.get("generate", True)
    if not isinstance(generate, bool):
        problems.append("generate must be true or false")
    include = data.get("include", [])
    if not isinstance(include, list) or not all(isinstance(x, str) and x.strip() for x in include):
        problems.append('include must be a list of plugin references, e.g. include = ["my_methods/", "mypkg.methods"]')
        include = []
    options = data.get("options", {})
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        problems.append("options must hold one table per method, e.g. [options.eegnet] epochs = 30")
        options = {}
    for m in sorted(set(options) - set(methods)):
        problems.append(f"[options.{m}]: {m!r} is not on the method axis")
    desc = data.get("description", "")
    note = data.get("note", "")
    for key, val in (("description", desc), ("note", note)):
        if not isinstance(val, str):
            problems.append(f"{key} must be a string")
    if problems:
        raise UserError(f"grid {source}: " + "; ".join(problems))
    return Grid(
        name=name,
        description=str(desc),
        note=str(note),
        methods=tuple(methods),
        subjects=tuple(_as_list(axes.get("subject", DEFAULTS["subject"]))),
        fractions=tuple(_as_list(axes.get("fraction", DEFAULTS["fraction"]))),
        ws=tuple(_as_list(axes.get("w", DEFAULTS["w"]))),
        seeds=tuple(_as_list(axes.get("seed", DEFAULTS["seed"]))),
        profile=profile,
        variants=tuple(variants),
        source=source,
        worlds=tuple(dict(w) for w in worlds),
        generate=bool(generate),
        checks=tuple(dict(c) for c in checks),
        include=tuple(include),
        options=tuple((m, tuple(sorted(o.items()))) for m, o in sorted(options.items())),
    )


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def value_problems(grid: Grid) -> list[str]:
    problems: list[str] = []

    def bad(axis: str, values: list, rule: str) -> None:
        if values:
            problems.append(f"{axis} {', '.join(repr(v) for v in values)} ({rule})")

    bad("method", [m for m in grid.methods if not isinstance(m, str) or not m], "method names are non-empty strings")
    bad("fraction", [f for f in grid.fractions if not (_is_num(f) and 0 < f <= 1)], "must be in (0, 1]")
    bad("w", [w for w in grid.ws if not (_is_num(w) and 0 <= w <= 1)], "must be in [0, 1]")
    bad("seed", [s for s in grid.seeds if not (_is_int(s) and s >= 0)], "must be non-negative integers")
    bad("subject", [s for s in grid.subjects if not (_is_int(s) and s >= 0)], "must be integers >= 0; 0 = all subjects")
    bad("profile", [grid.profile] if grid.profile not in PROFILES else [], f"must be one of {', '.join(PROFILES)}")
    for axis, values in (("method", grid.methods), ("subject", grid.subjects), ("fraction", grid.fractions), ("w", grid.ws), ("seed", grid.seeds)):
        if not values:
            problems.append(f"{axis}: no values")
    return problems


def check_values(grid: Grid) -> None:
    """Raise one UserError naming every bad axis value."""
    problems = value_problems(grid)
    if problems:
        raise UserError(f"grid {grid.name}: bad value(s): " + "; ".join(problems))


def method_problems(grid: Grid) -> list[str]:
    from bench.methods.base import METHODS
    from bench.methods.registry import load_builtin_methods
    from bench.plugins import load_entry_points

    load_builtin_methods()
    if any(m not in METHODS for m in grid.methods):
        load_entry_points()  # a package installed since the first scan
    unknown = [m for m in dict.fromkeys(grid.methods) if m not in METHODS]
    if unknown:
        return [f"unknown method(s) {', '.join(map(repr, unknown))}; known methods: {', '.join(sorted(METHODS))}"]
    problems = []
    for m in dict.fromkeys(grid.methods):
        known = set(METHODS[m].defaults())
        given = set(grid.method_options(m))
        if known:
            given |= {k for v in grid.variants if v.applies_to(m) for k in v.options}
        bad = sorted(given - known)
        if bad:
            problems.append(f"{m}: unknown option(s) {', '.join(bad)} (see `bench methods show {m}`)")
    return problems


def check_subjects(grid: Grid, available: list[int]) -> None:
    missing = [s for s in dict.fromkeys(grid.subjects) if _is_int(s) and s != 0 and s not in available]
    if missing:
        raise UserError(
            f"grid {grid.name}: subject(s) {', '.join(map(str, missing))} not in the dataset; "
            f"it has subjects {', '.join(map(str, available))} (0 = all subjects pooled)"
        )


def check_all(grid: Grid, available_subjects: list[int] | None = None) -> None:
    """Values, methods and (if given) subjects, all problems in one UserError."""
    problems = value_problems(grid) + method_problems(grid)
    if problems:
        raise UserError(f"grid {grid.name}: " + "; ".join(problems))
    if available_subjects is not None:
        check_subjects(grid, available_subjects)


# ----------------------------------------------------------------------------------------------
# Expansion
# ----------------------------------------------------------------------------------------------


def registry_uses_w(method: str) -> bool:
    """Whether the registered method has a w axis; unregistered names keep the axis."""
    return _registry_flag(method, "uses_w")


def registry_uses_fraction(method: str) -> bool:
    """Whether the registered method trains on EEG (has a fraction axis)."""
    return _registry_flag(method, "uses_fraction")


def _registry_flag(method: str, flag: str) -> bool:
    from bench.methods.base import METHODS
    from bench.methods.registry import load_builtin_methods

    load_builtin_methods()
    cls = METHODS.get(method)
    return True if cls is None else bool(getattr(cls, flag, True))


@dataclass(frozen=True)
class GridTrial:
    spec: TrialSpec
    variant: str | None = None


def expand_trials(grid: Grid, *, uses_w: Callable[[str], bool] | None = None, world: dict | None = None) -> list[GridTrial]:
    """Every trial of the grid (on ``world``, for a grid over several worlds), in a deterministic
    order, without duplicates."""
    uses_w = uses_w or registry_uses_w
    only, world_ws = grid.world_variants(world), grid.world_ws(world)
    out: dict[str, GridTrial] = {}
    for method in dict.fromkeys(grid.methods):
        variants = [v for v in grid.variants if v.applies_to(method)] or [None]
        if only is not None:
            variants = [v for v in variants if v is None or v.name in only]
        fractions = list(dict.fromkeys(float(f) for f in grid.world_fractions(world))) if registry_uses_fraction(method) else [1.0]
        for variant in variants:
            axis = world_ws or (variant.ws if variant is not None and variant.ws else grid.ws)
            ws = list(dict.fromkeys(float(w) for w in axis)) if uses_w(method) else [NO_W]
            options = tuple(sorted((grid.method_options(method) | (variant.options if variant else {})).items()))
            for subject in dict.fromkeys(grid.subjects):
                for fraction in fractions:
                    for w in ws:
                        for seed in dict.fromkeys(grid.seeds):
                            spec = TrialSpec(
                                method=method, subject=int(subject), fraction=fraction, w=w, seed=int(seed),
                                profile=str(grid.profile), options=options,
                            )  # fmt: skip
                            dedupe = json.dumps(asdict(spec), sort_keys=True, default=str)
                            out.setdefault(dedupe, GridTrial(spec, variant.name if variant else None))
    return list(out.values())


def expand(grid: Grid, *, uses_w: Callable[[str], bool] | None = None) -> list[TrialSpec]:
    return [t.spec for t in expand_trials(grid, uses_w=uses_w)]
