"""``vmreconcile rollback ID``: plan (and with ``--yes`` carry out) the return to before an entry.

Under the global lock, like apply: what a killed apply left is recovered first, the rollback
plan is made against the files as they are, shown, refused when a file changed since in a way
the entry does not explain (unless ``--force``), and carried out through apply's writer. The
rollback is itself a history entry (so it can be rolled back too) and sends its audit line.
Exit 0: done, nothing to do, or only planned (no ``--yes`` and no terminal); 1: refused or an
error.
"""

from __future__ import annotations

import sys

import typer

from ..apply import lock
from ..history.record import Audit, recover, store_of
from ..history.rollback import carry_out, plan_rollback, render, start_rollback
from ..history.store import HistoryError
from ..host import Host
from .common import fail, host_of, warn
from .privilege import privilege_errors


def rollback_command(
    ctx: typer.Context,
    entry_id: int = typer.Argument(..., metavar="ID", help="The history entry to undo (see `vmreconcile history`)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Restore the files (without it: show the rollback plan)."),
    force: bool = typer.Option(False, "--force", help="Restore files that changed since the entry too."),
    lock_timeout: float = typer.Option(
        lock.DEFAULT_TIMEOUT, "--lock-timeout", metavar="SECONDS", help="Seconds to wait for the lock."
    ),
) -> None:
    """Return the files of a history entry to what they were just before it (byte for byte).

    Tables, control files, options and .qmail-default are written back through apply's
    locked, atomic, symlink-safe writer; a file the entry created is removed; a maildir is
    never deleted. Refused when a file changed since (another apply, vadduser, a password
    change) unless --force. The rollback is recorded in the history too.

    Example: vmreconcile rollback 7 --yes
    """
    host = host_of(ctx)
    with privilege_errors("rollback", host):
        try:
            with lock.global_lock(host.lock_path, lock_timeout, on_wait=lambda m: typer.echo(m, err=True)):
                _rollback(host, entry_id, yes=yes, force=force)
        except (lock.LockTimeout, HistoryError) as exc:
            raise fail(exc.strerror or str(exc)) from None
        except PermissionError:
            raise
        except (OSError, LookupError, ValueError) as exc:  # a base user gone, a symlinked directory ...
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror and not exc.filename else str(exc)
            raise fail(f"rollback {entry_id}: {message}") from None


def _rollback(host: Host, entry_id: int, *, yes: bool, force: bool) -> None:
    store = store_of(host)
    if not store.exists():
        raise fail(f"no history at {host.history_dir}: nothing to roll back")
    recover(host, store, warn, Audit(host, warn))
    plan = plan_rollback(host, store, entry_id, force=force)
    typer.echo(render(plan), nl=False)
    if plan.conflicts:
        raise fail(
            f"refusing to roll back {entry_id}: {len(plan.conflicts)} file(s) changed since in ways the entry does "
            "not explain (above); nothing was written. Use --force to restore them anyway"
        )
    if not plan.writing:
        typer.echo(f"Nothing to roll back: the files are as they were before entry {entry_id}.")
        return
    if not yes:
        if not sys.stdin.isatty():
            typer.echo("Rollback not carried out: pass --yes to restore these files.")
            return
        if not typer.confirm("Restore these files?", default=False):
            raise fail("rollback cancelled; nothing was written")
    add, change, destroy = plan.summary()
    recording = start_rollback(host, plan, log=typer.echo, warn=warn)
    try:
        result = carry_out(host, plan, typer.echo)
    except BaseException:
        recording.finish(wrote=True, interrupted=True)
        raise
    entry = recording.finish(wrote=bool(result.written), errors=result.errors)
    recorded = f"history entry {entry['id']}" if entry else None
    if result.errors:
        for error in result.errors:
            typer.echo(f"vmreconcile: error: {error}", err=True)
        if recorded:
            typer.echo(f"vmreconcile: the partial rollback is recorded as {recorded}", err=True)
        raise typer.Exit(1)
    typer.echo(f"Rollback complete: {add} recreated, {change} restored, {destroy} removed.")
    if entry is not None:
        typer.echo(f"Recorded as {recorded} (`vmreconcile rollback {entry['id']}` redoes entry {entry_id}).")


def register(app: typer.Typer) -> None:
    app.command("rollback")(rollback_command)
