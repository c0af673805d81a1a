"""``vmreconcile export``: the live system as configuration YAML (adopting an existing install)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..atomic import write_file
from ..desired.export import ExportError, export_yaml
from ..live import read_live_state
from .common import fail, host_of
from .show import LIVE_ERRORS


def export(
    ctx: typer.Context,
    domain: str | None = typer.Option(
        None, "--domain", metavar="DOMAIN", help="Only this domain (global sections are kept)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to FILE (atomically) instead of stdout.", metavar="FILE"
    ),
) -> None:
    """Print the live domains as vmreconcile YAML: every field needed to rebuild them exactly.

    Stored hashes are written as they are. Validating the result gives warnings at most, and
    planning it against the same host shows no change.

    Example: vmreconcile export --domain mydomain.org -o vmreconcile.yaml
    """
    try:
        state = read_live_state(host_of(ctx))
        text = export_yaml(state, domain)
    except ExportError as exc:
        raise fail(str(exc)) from None
    except LIVE_ERRORS as exc:
        raise fail(str(exc)) from None
    if output is None:
        sys.stdout.write(text)
        return
    try:
        write_file(output, text.encode("utf-8"), mode=0o644)  # never half a config in a checkout
    except OSError as exc:
        raise fail(f"{output}: {exc.strerror}") from None


def register(app: typer.Typer) -> None:
    app.command("export")(export)
