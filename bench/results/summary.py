"""The closing summary of a run: method (x variant) x metric means of its records, as a rich table
that fits the screen (or 160 columns in a log file)."""

from __future__ import annotations

import os

from rich.console import Console
from rich.table import Table


def summary_width(out: Console, log_width: int = 160) -> int:
    """A terminal's width (or $COLUMNS); ``log_width`` when stdout is a file or pipe (rich would use 80)."""
    return out.width if out.is_terminal or "COLUMNS" in os.environ else log_width


def print_table(out: Console, table: Table) -> None:
    """Print at :func:`summary_width`, wider than rich's 80 columns when writing to a log."""
    width = summary_width(out)
    if width <= out.width:
        out.print(table)
    else:
        Console(file=out.file, width=width, color_system=None).print(table)


def metric_summary(frame, keys: list[str], width: int = 160) -> Table | None:
    """Method (x variant) x metric means over this run's ok records: the headline metrics first (the
    leaderboard's names), then the rest, as many as fit ``width`` columns without truncating a cell."""
    if frame.empty:
        return None
    df = frame[frame["key"].isin(keys)]
    if df.empty:
        return None
    from bench.metrics import METRICS, shown_metrics

    short = {f"metric.{m.name}": m.label for m in shown_metrics()}  # the leaderboard's columns, in its order
    present = [c for c in df.columns if c.startswith("metric.") and not c.endswith((".ci_low", ".ci_high"))]
    metrics = [m for m in short if m in present] + sorted(m for m in present if m not in short)
    short |= {m: METRICS[m.removeprefix("metric.")].label for m in present if m.removeprefix("metric.") in METRICS and m not in short}
    df = df.assign(row=df["method"] + df["variant"].fillna("").map(lambda v: f" [{v}]" if v else ""))
    rows = []
    for row, g in df.groupby("row", sort=False):
        ok = g[g["status"] == "ok"]
        cells = {"method": str(row), "ok": str(len(ok)), "failed": str(int((g["status"] != "ok").sum()))}
        for m in metrics:
            vals = ok[m].dropna() if m in ok else []
            cells[m] = f"{vals.mean():.3f}" if len(vals) else "-"
        rows.append(cells)

    def col_width(col: str, header: str) -> int:  # rich: one border + one space of padding each side
        return max(len(header), *(len(r[col]) for r in rows)) + 3

    used = 1 + sum(col_width(c, c) for c in ("method", "ok", "failed"))
    shown = []
    for m in metrics:
        need = col_width(m, short.get(m, m.removeprefix("metric.")))
        if used + need > width:
            break
        used += need
        shown.append(m)
    left = len(metrics) - len(shown)
    table = Table(title="mean over this grid's trials (ok only)", caption=f"{left} more metric(s) in the store's records" if left else None)
    table.add_column("method", no_wrap=True)
    table.add_column("ok", justify="right")
    table.add_column("failed", justify="right")
    for m in shown:
        table.add_column(short.get(m, m.removeprefix("metric.")), justify="right", no_wrap=True)
    for cells in rows:
        table.add_row(cells["method"], cells["ok"], cells["failed"], *(cells[m] for m in shown))
    return table
