"""What every command module shares; kept apart from `main` so that a command module can be
imported first (main imports every command module while it registers them)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import typer
import typer.core

from ..host import Host
from ..printable import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..cache.store import CacheStore


def host_of(ctx: typer.Context) -> Host:
    """The `Host` the global options built (commands call this instead of parsing --root)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Host) else Host(None)


#: Where the global ``--no-cache`` / ``--cache-dir`` are kept (the root context's ``meta``).
CACHE_META = "vmreconcile.cache"
CACHE_SETTINGS = ("no_cache", "cache_dir")


def cache_store(ctx: typer.Context) -> CacheStore | None:
    """Plan's cache directory (`cache.store`), or None with ``--no-cache`` or when it cannot be
    used (not ours, not 0700, not makeable): the command then reads everything, as always."""
    from ..cache.store import CacheStore

    settings = ctx.find_root().meta.get(CACHE_META, {})
    if settings.get("no_cache"):
        return None
    directory = settings.get("cache_dir")
    return CacheStore.open(os.fspath(directory) if directory else host_of(ctx).cache_dir_str)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise: ``raise fail("...")``.

    The message often quotes names, paths and values from YAML or a tenant's home: control
    characters are escaped (`printable`), so one error is one line and nothing raw reaches a
    terminal.
    """
    typer.echo(printable(f"vmreconcile: {message}"), err=True)
    return typer.Exit(code)


def warn(message: str) -> None:
    """One line on stderr that does not end the command, escaped as `fail` escapes."""
    typer.echo(printable(f"vmreconcile: {message}"), err=True)


def colour_wanted(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    return not os.environ.get("NO_COLOR") and stream.isatty()


def style_for(stream: TextIO) -> Callable[[str, str], str]:
    """``style(text, colour)`` for what is written to ``stream``: typer's colours, or the text as is."""
    if colour_wanted(stream):
        return lambda text, colour: typer.style(text, fg=colour)
    return lambda text, colour: text


def optional_metavar(name: str) -> str:
    """The metavar that makes an optional argument read ``[NAME]`` in every usage line.

    Newer typer releases put the brackets around an optional argument themselves (giving
    ``[[NAME]]`` for a bracketed metavar); older ones, such as Debian 12's, print the metavar
    as it is given.
    """
    brackets_itself = hasattr(typer.core.TyperArgument, "_usage_display_name")
    return name if brackets_itself else f"[{name}]"


DEFAULT_CONFIG = Path("vmreconcile.yaml")


def config_argument() -> Any:
    """The ``[CONFIG]`` argument of validate, plan and apply (one spelling, one help text)."""
    return typer.Argument(
        DEFAULT_CONFIG,
        metavar=optional_metavar("CONFIG"),
        help="A YAML file, or a directory whose *.yaml files are merged (default ./vmreconcile.yaml).",
        show_default=False,
    )


def domains_option() -> Any:
    """``--domain DOMAIN`` (repeatable) of plan and apply."""
    return typer.Option(None, "--domain", metavar="DOMAIN", help="Only this domain (repeatable).")


def shown_path(path: Path) -> str:
    """``path`` for a command line to copy: relative when it is below the current directory."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def this_command() -> list[str]:
    """How to run this very vmreconcile from a shell, e.g. ``.venv/bin/vmreconcile``.

    A venv's ``vmreconcile`` is not on PATH unless the venv is activated (``bin/demo`` does not
    activate one), so hints that name a command name the one that is running, as it was
    started: plain ``vmreconcile`` only when PATH finds this same program; ``python -m
    vmreconcile`` when it was started so.
    """
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is None or script.name != "vmreconcile" or not script.is_file():
        return [sys.executable, "-m", "vmreconcile"]
    found = shutil.which("vmreconcile")
    if found and Path(found).resolve() == script.resolve():
        return ["vmreconcile"]
    return [shown_path(script)]


def command_line(*args: str) -> str:
    """`this_command` with ``args``, quoted for a POSIX shell."""
    return shlex.join([*this_command(), *args])
