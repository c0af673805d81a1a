"""``vmreconcile install-runtime``: write the launchers qmail, Dovecot and Courier execute."""

from __future__ import annotations

from pathlib import Path

import typer

from ..install import DEFAULT_PYTHON, InstallError, install_runtime
from .common import fail, host_of


def install_runtime_command(
    ctx: typer.Context,
    bindir: Path = typer.Option(
        ..., "--bindir", metavar="DIR", help="Where the launchers go (the YAML's runtime.bindir)."
    ),
    python: str = typer.Option(DEFAULT_PYTHON, "--python", metavar="FILE", help="Interpreter every base user can run."),
    libdir: Path | None = typer.Option(
        None, "--libdir", metavar="DIR", help="Runtime copy (default BINDIR/../lib/vmreconcile-runtime)."
    ),
) -> None:
    """Install checkvpw, authvmailmgr, authpipe, vauthenticate, vdeliver and vauthd launchers.

    The global --root is baked into each launcher as its config root.

    Example: vmreconcile install-runtime --bindir /usr/local/bin
    """
    host = host_of(ctx)
    try:
        written = install_runtime(bindir, root=str(host.root) if host.root else None, python=python, libdir=libdir)
    except (InstallError, OSError) as exc:
        raise fail(str(exc)) from None
    for path in written:
        typer.echo(f"installed {path}")


def register(app: typer.Typer) -> None:
    app.command("install-runtime")(install_runtime_command)
