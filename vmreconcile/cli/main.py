"""``vmreconcile``: the typer application and its global options.

Every module in this package that defines ``register(app)`` adds its command(s); the global
``--root`` (or ``VMRECONCILE_ROOT``) is parsed here once and handed down as a `Host` in
``ctx.obj``. Exit codes: 0 success, 1 error (one line on stderr), 2 usage (typer), and for
``plan --detailed-exitcode`` 2 = changes pending.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
import signal
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
import typer.core

from .. import __version__
from ..host import Host
from .common import CACHE_META, CACHE_SETTINGS

#: The global options every command accepts after its name too (``plan --root DIR``).
GLOBAL_AFTER_COMMAND = ("root", "version", "no_cache", "cache_dir")


class Commands(typer.core.TyperGroup):
    """The command group: each command also takes the global options, and shows metavariables.

    People type ``vmreconcile plan --root DIR``; click only knows a group's options before the
    command. So each command gets a copy of the global ``--root`` and ``--version``: the copy
    is not passed to the command, it sets the `Host` in the root context (the group's own
    callback ran first, so a ``--root`` after the command wins). The copy reads no environment
    variable: ``VMRECONCILE_ROOT`` is the group's. New typer releases print an argument's
    Python type next to its metavariable (``CONFIG <path>``); an argument with a metavariable
    shows just that.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        mirrored = [p for p in self.params if p.name in GLOBAL_AFTER_COMMAND]
        for command in self.commands.values():
            for param in command.params:
                if isinstance(param, typer.core.TyperArgument) and param.metavar:
                    param.display_type_rich = _no_type  # type: ignore[method-assign]
            taken = {name for p in command.params for name in p.opts}
            command.params.extend(_after_command(p) for p in mirrored if not taken & set(p.opts))


def _no_type(ctx: Any = None) -> None:
    return None


def _after_command(param: Any) -> Any:
    """A command's copy of a global option."""
    copied = copy.copy(param)
    copied.envvar = None
    copied.show_envvar = False
    copied.expose_value = False
    if param.name == "root":
        copied.callback = _root_after_command
    elif param.name in CACHE_SETTINGS:
        copied.callback = _cache_after_command
    return copied


def _root_after_command(ctx: Any, _param: Any, value: Any) -> None:
    if value is not None:
        ctx.find_root().obj = Host(Path(value))


def _cache_after_command(ctx: Any, param: Any, value: Any) -> None:
    if value:
        ctx.find_root().meta.setdefault(CACHE_META, {})[param.name] = value


app = typer.Typer(
    name="vmreconcile",
    help="Declarative management of VMailMgr-style virtual mail domains for qmail.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=Commands,
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
        help="Treat DIR as / for everything (config, qmail, base users from DIR/etc/passwd, lock); "
        "also accepted after the command.",
        metavar="DIR",
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    no_cache: bool = typer.Option(
        False,
        "--no-cache",
        envvar="VMRECONCILE_NO_CACHE",
        help="Neither use nor update plan's cache of decoded tables and checked configuration.",
    ),
    cache_dir: Path | None = typer.Option(
        None,
        "--cache-dir",
        envvar="VMRECONCILE_CACHE_DIR",
        metavar="DIR",
        help="Where plan keeps its cache (default /var/cache/vmreconcile, under --root inside DIR); "
        "used only when owned by you with mode 0700.",
    ),
) -> None:
    ctx.obj = Host(root)
    ctx.meta.setdefault(CACHE_META, {}).update(
        {name: value for name, value in (("no_cache", no_cache), ("cache_dir", cache_dir)) if value}
    )


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


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, not an Exception, so that no handler on the
    way up mistakes it for an error to report or retry; ``finally`` blocks still run (temp
    files are removed, descriptors and the lock released), so the host is left as a crash
    would leave it: every file old or new, and the next apply converges."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signum)


def _interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def main() -> None:
    """The console script: the typer app, with SIGINT and SIGTERM ending it in one line and
    exit 130 / 143 (128 + the signal), never a traceback."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        app()
    except Interrupted as exc:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut this line short
        name = signal.Signals(exc.signum).name
        sys.stderr.write(
            f"vmreconcile: interrupted by {name}; every file is as it was or complete (never half-written); "
            "run the command again\n"
        )
        sys.stderr.flush()
        sys.exit(128 + exc.signum)
    except PermissionError as exc:  # a command that did not map it itself: still one line, no traceback
        from .privilege import privilege_message

        typer.echo(f"vmreconcile: {privilege_message(exc)}", err=True)
        raise SystemExit(1) from None
