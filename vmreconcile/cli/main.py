"""``vmreconcile``: the typer application and its global options.

Every module in this package that defines ``register(app)`` adds its command(s); the global
``--root`` (or ``VMRECONCILE_ROOT``) is parsed here once and handed down as a `Host` in
``ctx.obj``. Exit codes: 0 success, 1 error (one line on stderr), 2 usage (typer), and for
``plan --detailed-exitcode`` 2 = changes pending.
"""

from __future__ import annotations

import importlib
import pkgutil
import types
import typing
from collections.abc import Callable
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


def _spell_unions_for_old_typer(callback: Callable[..., object]) -> None:
    """Rewrite ``X | None`` parameter annotations of ``callback`` as ``typing.Optional[X]``.

    Debian 12 ships typer 0.7, which predates PEP 604 and stops with "Type not yet supported:
    pathlib.Path | None" before any command runs; newer typers read both spellings alike. Doing
    it here, once for every registered command, lets command modules keep the modern spelling.
    """
    for name, hint in typing.get_type_hints(callback).items():
        if isinstance(hint, types.UnionType):
            callback.__annotations__[name] = typing.Union[hint.__args__]  # noqa: UP007 - the point


def _make_old_typer_compatible() -> None:
    callbacks = [info.callback for info in app.registered_commands]
    if app.registered_callback is not None:
        callbacks.append(app.registered_callback.callback)
    for callback in callbacks:
        if callback is not None:
            _spell_unions_for_old_typer(callback)


_register_commands()
_make_old_typer_compatible()


def main() -> None:
    try:
        app()
    except PermissionError as exc:  # a command that did not map it itself: still one line, no traceback
        from .privilege import privilege_message

        typer.echo(f"vmreconcile: {privilege_message(exc)}", err=True)
        raise SystemExit(1) from None
