"""``vmreconcile``: the typer application and its global options.

Every module in this package that defines ``register(app)`` adds its command(s); the global
``--root`` (or ``VMRECONCILE_ROOT``) is parsed here once and handed down as a `Host` in
``ctx.obj``. Exit codes: 0 success, 1 error (one line on stderr), 2 usage (typer), and for
``plan --detailed-exitcode`` 2 = changes pending.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import typer

from .. import __version__
from ..host import Host

app = typer.Typer(
    name="vmreconcile",
    help="Declarative management of VMailMgr-style virtual mail domains for qmail.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vmreconcile {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    root: Path | None = typer.Option(
        None,
        "--root",
        envvar="VMRECONCILE_ROOT",
        help="Treat DIR as / for everything (config, qmail, base users from DIR/etc/passwd, lock).",
        metavar="DIR",
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    ctx.obj = Host(root)


def _register_commands() -> None:
    package = Path(__file__).parent
    for info in sorted(pkgutil.iter_modules([str(package)]), key=lambda m: m.name):
        if info.name in ("main", "__init__"):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()


def main() -> None:
    try:
        app()
    except PermissionError as exc:  # a command that did not map it itself: still one line, no traceback
        from .privilege import privilege_message

        typer.echo(f"vmreconcile: {privilege_message(exc)}", err=True)
        raise SystemExit(1) from None
