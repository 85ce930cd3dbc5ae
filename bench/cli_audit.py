"""`bench audit` (block-design leakage audit), registered on the main app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the audit command to ``app``."""
