"""Where the schemas and examples live, in a checkout and in an installed wheel alike.

The repository keeps them at the top level (``schemas/``, ``examples/``); ``vmreconcile/schemas``
and ``vmreconcile/examples`` are symlinks to them, so the wheel packages them as package data
and this one lookup works everywhere.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def schema_path(name: str) -> Path:
    """``schemas/<name>`` (e.g. ``vmreconcile.schema.json``, ``show.schema.json``)."""
    return PACKAGE_DIR / "schemas" / name


def examples_dir() -> Path:
    return PACKAGE_DIR / "examples"
