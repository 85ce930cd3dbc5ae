"""`bench audit`: the block-design leakage audit (see :mod:`bench.evaluation.audit`), registered on the main app.

The report is printed; it is written as JSON only where ``--json OUT`` says (never into the
dataset folder unasked).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from bench.errors import UserError

console = Console()
err_console = Console(stderr=True)


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def _p(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def render(report: dict) -> Group:
    """Rich renderables of an audit report: probe table, supporting evidence, verdict."""
    chance = report["chance"]
    n_sub = len(report["subjects"])
    probes = Table(title=f"stimulus-blind probes -> class (test split, mean over {n_sub} subject(s); chance {chance:.3f})")
    for col, just in (
        ("probe", "left"),
        ("features", "left"),
        ("accuracy", "right"),
        ("x chance", "right"),
        ("p block-relabel", "right"),
        ("p trial-shuffle", "right"),
        ("p within-block", "right"),
        ("flag", "center"),
    ):
        probes.add_column(col, justify=just)
    for name, p in report["probes"].items():
        if not p["available"]:
            probes.add_row(name, p["description"], "n/a", "-", "-", "-", "-", "", style="dim")
            continue
        null = p["null"]
        within = _p(null["within_block"]["p"]) + (" (deg.)" if null["within_block"].get("degenerate") else "")
        probes.add_row(
            name,
            p["description"],
            _f(p["accuracy"]),
            _f(p["x_chance"], ".1f"),
            _p(null["block_relabel"]["p"]),
            _p(null["trial_shuffle"]["p"]),
            within,
            "[bold red]LEAK[/]" if p["flagged"] else "",
        )

    support = Table(title="supporting evidence")
    support.add_column("check")
    support.add_column("result", justify="right")
    support.add_column("reading")
    band = report["band_audit"]
    support.add_row("ERP probe, 5-95 Hz file (within subject)", _f(band["without_slow"]["accuracy"]), "stimulus response + whatever survives 5 Hz high-pass")
    if band["available"]:
        support.add_row("ERP probe, file with slow content", _f(band["with_slow"]["accuracy"]), "")
        support.add_row(
            "band audit gap (slow - 5-95)",
            f"{band['gap']:+.3f}",
            "[bold red]slow content carries the class[/]" if band["flagged"] else "no gain from slow content",
        )
    else:
        support.add_row("band audit", "n/a", "no file with slow content")
    loso = report["loso"]
    support.add_row(
        "leave-one-subject-out ERP probe",
        _f(loso["accuracy"]),
        "n/a (one subject)" if not loso["available"] else f"vs {loso['within_subject_accuracy']:.3f} within subject",
    )
    design = report["design"]
    support.add_row("class from block identity alone", _f(design["block_identity_accuracy"]), f"blocks: {design['blocks']}")

    leak = report["flagged_probes"]
    colour = "bold red" if leak else "bold green"
    lines = [Text.from_markup(f"[{colour}]{report['verdict']}[/]")]
    lines += [Text("  - " + e) for e in report["evidence"]]
    if any(p["available"] and p["null"]["within_block"].get("degenerate") for p in report["probes"].values()):
        lines.append(Text("(deg.) every block holds one class, so the within-block null equals the observed accuracy: block identity alone explains it", style="dim"))
    lines.append(Text("rule: " + report["rule"], style="dim"))
    lines += [Text("note: " + n, style="yellow") for n in report["notes"]]
    return Group(probes, support, *lines)


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command to ``app``."""

    @app.command("audit")
    def audit(
        data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder (EEG-CVPR40 layout). Default: the mini world (built on first use)."),
        as_json: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON to this file."),
        subjects: Optional[List[str]] = typer.Option(None, "--subjects", help="Subjects to audit: --subjects 1,4 or repeated (default: all)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the permutation nulls."),
        permutations: int = typer.Option(999, "--permutations", help="Permutations per null (>= 400 so p can reach 0.01/4)."),
        no_loso: bool = typer.Option(False, "--no-loso", help="Skip leave-one-subject-out."),
        fail_on_leak: bool = typer.Option(False, "--fail-on-leak", help="Exit with status 1 when leakage is suspected."),
    ) -> None:
        """Audit a dataset for block-design leakage: stimulus-blind probes, band audit, nulls, LOSO."""
        from bench.evaluation.audit import audit_dataset, write_report
        from bench.cli.harness import parse_multi
        from bench.experiment.run import resolve_data

        subject_list = parse_multi(subjects, int, "subjects")
        if as_json is not None and as_json.expanduser().is_dir():
            raise UserError(f"--json {as_json}: is a folder; give a file name")
        root, _ = resolve_data(data, say=lambda m: err_console.print(m, highlight=False) if err_console.is_terminal else None)
        with err_console.status("auditing") as status:
            report = audit_dataset(root, subject_list, seed=seed, n_permutations=permutations, loso=not no_loso, progress=status.update)
        console.print(render(report))
        if as_json:
            out = write_report(report, as_json)
            console.print(f"written {out}", highlight=False)
        if fail_on_leak and report["flagged_probes"]:
            raise typer.Exit(1)
