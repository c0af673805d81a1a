"""Has ``qmail.reload`` changed since it last ran? Told from the apply history.

The reload command is not a file on the host: nothing live says which command the last apply
ran. The history does: every entry records the command configured when it was made. So a plan
made on the host compares the configured command with the newest entry's and, when they
differ, says so in a note, even when nothing else changes (a pull request that only changes
``qmail.reload`` is then visible in its plan). Without a history (a new host, a plan as a user
who cannot read it, ``plan --state``) there is nothing to compare with; every plan that will
run the command shows it anyway (`Plan.reload_to_run`).
"""

from __future__ import annotations

from ..host import Host
from ..printable import printable


def last_recorded_reload(host: Host) -> tuple[int, str | None] | None:
    """(entry id, the reload command it recorded) of the newest history entry, or None when
    there is no history or it cannot be read (never an error: this only adds a note)."""
    from ..history.record import store_of

    try:
        store = store_of(host)
        if not store.exists():
            return None
        ids = store.ids()
        if not ids:
            return None
        entry = store.load(ids[-1])
    except (OSError, ValueError):
        return None
    command = entry.get("reload_command")
    return ids[-1], command if isinstance(command, str) and command else None


def reload_change_note(host: Host, configured: str | None) -> str | None:
    """A note when the configured ``qmail.reload`` is not the one the newest history entry
    recorded, else None."""
    found = last_recorded_reload(host)
    if found is None:
        return None
    entry_id, recorded = found
    if recorded == (configured or None):
        return None

    def shown(command: str | None) -> str:
        return f"`{printable(command)}`" if command else "(none)"

    return (
        f"qmail.reload changed since the last apply (history entry {entry_id}): {shown(recorded)} -> "
        f"{shown(configured)}; apply runs the new command as root whenever control/virtualdomains changes"
    )
