"""``vmreconcile history`` (list the entries) and ``vmreconcile history show ID``.

One command with an optional ``show ID`` (not a sub-command group), so its whole help is one
page of ``--help`` and of vmreconcile(1).

The history lives in a root-only directory; listing it first finishes what a killed apply left
(`history.record.recover`) when the global lock is free. An entry holds what tenants control
(names in its changes, paths, the reload command, ``SUDO_USER``): the text output writes every
field through `printable`, as plan and show do, so nothing raw reaches the terminal; the JSON
output is ASCII with escapes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum

import typer

from ..apply import lock
from ..history.record import Audit, recover, store_of
from ..history.store import HistoryError, Store
from ..host import Host
from ..printable import printable
from .common import fail, host_of, warn
from .privilege import privilege_errors


class Format(StrEnum):
    text = "text"
    json = "json"


#: The fields of an entry the listing shows (``--format json``).
LIST_FIELDS = (
    "id",
    "time",
    "user",
    "command",
    "config",
    "config_digest",
    "commit",
    "commit_dirty",
    "summary",
    "outcome",
    "rollback_of",
)


def open_store(host: Host) -> Store:
    """The history, with a killed apply's leftovers recovered when no apply is running."""
    store = store_of(host)
    if not store.exists():
        return store
    try:
        with lock.global_lock(host.lock_path, 0.5):
            recover(host, store, warn, Audit(host, warn))
    except lock.LockTimeout:
        warn("an apply or rollback is running; its entry appears once it is done")
    return store


def summary_text(entry: Mapping[str, object]) -> str:
    summary = entry.get("summary")
    counts = summary if isinstance(summary, Mapping) else {}
    return f"+{counts.get('add', 0)} ~{counts.get('change', 0)} -{counts.get('destroy', 0)}"


def commit_text(entry: Mapping[str, object]) -> str:
    commit = entry.get("commit")
    if not isinstance(commit, str):
        return "-"
    return commit[:12] + ("-dirty" if entry.get("commit_dirty") else "")


def what_text(entry: Mapping[str, object]) -> str:
    if entry.get("rollback_of") is not None:
        return f"undoes {entry['rollback_of']}"
    digest = entry.get("config_digest")
    return f"config {str(digest)[:12]}" if digest else "config unknown"


def list_text(entries: list[dict[str, object]]) -> str:
    if not entries:
        return "No history entries.\n"
    rows: list[tuple[str, ...]] = [("ID", "TIME", "USER", "COMMAND", "CHANGES", "WHAT", "COMMIT", "OUTCOME")]
    for e in entries:
        cells = (
            e.get("id"),
            e.get("time"),
            e.get("user"),
            e.get("command"),
            summary_text(e),
            what_text(e),
            commit_text(e),
            e.get("outcome"),
        )
        rows.append(tuple(printable(str(c)) for c in cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n" for row in rows)


def _state_text(state: object) -> str:
    if not isinstance(state, Mapping):
        return "?"
    if state.get("type") == "missing":
        return "none"
    if state.get("type") == "symlink":
        return f"symlink to {state.get('link')}"
    if state.get("not_kept"):
        return f"no copy kept ({state.get('not_kept')})"
    if state.get("type") != "file":
        return str(state.get("type"))
    digest = str(state.get("sha256") or "")[:12]
    return (
        f"{state.get('size')} bytes, mode {state.get('mode')}, {state.get('uid')}:{state.get('gid')}, sha256:{digest}"
    )


def show_text(entry: Mapping[str, object]) -> str:
    lines = [
        f"history entry {entry.get('id')}: {entry.get('command')} by {entry.get('user')} (uid {entry.get('uid')}) "
        f"at {entry.get('time')}, {entry.get('outcome')}",
    ]
    if entry.get("rollback_of") is not None:
        lines.append(f"undoes:  history entry {entry['rollback_of']}")
    else:
        lines.append(f"config:  {entry.get('config') or 'unknown'}")
        lines.append(f"digest:  {entry.get('config_digest') or 'unknown'}")
        lines.append(f"commit:  {commit_text(entry)}")
    changes = entry.get("changes")
    lines.append(f"changes: {summary_text(entry)}")
    lines += [f"  {c}" for c in changes] if isinstance(changes, list) else []
    errors = entry.get("errors")
    if isinstance(errors, list) and errors:
        lines.append("errors:")
        lines += [f"  {e}" for e in errors]
    files = entry.get("files")
    lines.append("files (the previous bytes of each are kept):")
    for record in files if isinstance(files, list) else []:
        lines.append(f"  {record.get('kind')} {record.get('path')}")
        lines.append(f"    before: {_state_text(record.get('before'))}")
        lines.append(f"    after:  {_state_text(record.get('after'))}")
    lines.append(f"undo:    vmreconcile rollback {entry.get('id')}")
    return "".join(printable(line) + "\n" for line in lines)


def history_command(
    ctx: typer.Context,
    action: str | None = typer.Argument(None, metavar="show", help="With ID: show that entry in full."),
    entry_id: int | None = typer.Argument(None, metavar="ID", help="An entry's id (from the list)."),
    format: Format = typer.Option(Format.text, "--format", "-f", metavar="FORMAT", help="text or json."),
) -> None:
    """List the history: one entry per apply or rollback that changed something (id, time,
    user, command, changes, configuration digest, git commit, outcome); `history show ID`
    shows one entry with its changes and every file it replaced, before and after.

    The history is kept in /var/lib/vmreconcile/history/ (root only; --root moves it).

    Example: vmreconcile history show 7 --format json
    """
    if action is not None and (action != "show" or entry_id is None):
        raise fail("usage: vmreconcile history [show ID] [--format text|json]", code=2)
    host = host_of(ctx)
    with privilege_errors("history", host):
        try:
            store = open_store(host)
            if entry_id is not None:
                entry = store.load(entry_id)
            else:
                entries = store.entries()
        except HistoryError as exc:
            raise fail(str(exc.strerror or exc)) from None
        except PermissionError:
            raise
        except (OSError, ValueError) as exc:
            raise fail(f"history: {exc}") from None
    if entry_id is not None:
        typer.echo(json.dumps(entry, indent=1) if format is Format.json else show_text(entry), nl=False)
        if format is Format.json:
            typer.echo("")
    elif format is Format.json:
        typer.echo(json.dumps([{k: e.get(k) for k in LIST_FIELDS} for e in entries], indent=1))
    else:
        typer.echo(list_text(entries), nl=False)


def register(app: typer.Typer) -> None:
    app.command("history")(history_command)
