"""What every command module shares; kept apart from `main` so that a command module can be
imported first (main imports every command module while it registers them)."""

from __future__ import annotations

import typer

from ..host import Host
from ..printable import printable


def host_of(ctx: typer.Context) -> Host:
    """The `Host` the global options built (commands call this instead of parsing --root)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Host) else Host(None)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise: ``raise fail("...")``.

    The message often quotes names, paths and values from YAML or a tenant's home: control
    characters are escaped (`printable`), so one error is one line and nothing raw reaches a
    terminal.
    """
    typer.echo(printable(f"vmreconcile: {message}"), err=True)
    return typer.Exit(code)


def warn(message: str) -> None:
    """One line on stderr that does not end the command."""
    typer.echo(f"vmreconcile: {message}", err=True)
