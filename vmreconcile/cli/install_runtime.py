"""``vmreconcile install-runtime``: write the launchers qmail, Dovecot and Courier execute.

A file in ``--bindir`` that install-runtime did not write (VMailMgr's own ``checkvpw``) is
never overwritten: the install is refused naming it (exit 1, nothing written), or with
``--replace`` kept as ``NAME.orig-<time>``; ``--uninstall`` removes the launchers and puts the
kept files back. The same holds for ``--libdir``: only install-runtime's own marked runtime copy
is ever replaced or removed (`vmreconcile.install.own_version`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..install import DEFAULT_PYTHON, InstallError, install_runtime, uninstall_runtime
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
    replace: bool = typer.Option(
        False, "--replace", help="Keep files it did not write as NAME.orig-<time> and install over them."
    ),
    uninstall: bool = typer.Option(
        False, "--uninstall", help="Remove the launchers and the runtime copy; put kept originals back."
    ),
) -> None:
    """Install checkvpw, authvmailmgr, authpipe, vauthenticate, vdeliver and vauthd launchers.

    The global --root is baked into each launcher as its config root. A file in --bindir that
    install-runtime did not write is refused (exit 1) unless --replace, which keeps it as
    NAME.orig-<time> and says how to restore it; --uninstall puts it back.

    Example: vmreconcile install-runtime --bindir /usr/local/bin
    """
    host = host_of(ctx)
    try:
        if uninstall:
            for line in uninstall_runtime(bindir, libdir) or [f"nothing of vmreconcile's in {bindir}"]:
                typer.echo(line)
            return
        written = install_runtime(
            bindir,
            root=str(host.root) if host.root else None,
            python=python,
            libdir=libdir,
            replace=replace,
            log=typer.echo,
        )
    except PermissionError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise fail(
            f"install-runtime cannot write{where} (permission denied): run it as root, "
            "or give a --bindir (and --libdir) you can write"
        ) from None
    except (InstallError, OSError) as exc:
        raise fail(str(exc)) from None
    for path in written:
        typer.echo(f"installed {path}")


def register(app: typer.Typer) -> None:
    app.command("install-runtime")(install_runtime_command)
