"""``vmreconcile validate [CONFIG]``: every problem of a configuration at once; touches nothing."""

from __future__ import annotations

from pathlib import Path

import typer

from ..desired.load import check_config
from ..desired.semantics import summary
from ..printable import printable
from .common import config_argument, fail


def validate(config: Path = config_argument()) -> None:
    """Check a configuration: YAML, schema, names, references, sizes, dates, passwords.

    Prints every error as file:line:col: path: message (exit 1), or the warnings and a one-line
    summary (exit 0). Secrets ({env:}, {file:}) are not read.

    Example: vmreconcile validate config/
    """
    result = check_config(config)
    for diagnostic in result.errors + result.warnings:
        typer.echo(str(diagnostic))
    if result.errors or result.spec is None:
        count = len(result.errors)
        raise fail(f"{config}: {count} error{'' if count == 1 else 's'}")
    warned = f" ({len(result.warnings)} warning{'' if len(result.warnings) == 1 else 's'})" if result.warnings else ""
    typer.echo(printable(f"{config}: valid: {summary(result.spec)}{warned}"))


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
