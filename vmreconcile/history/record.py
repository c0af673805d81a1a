"""Recording an apply (or a rollback) in the history, around its writes.

``vmreconcile apply`` calls `start_apply` once the plan is confirmed and before the first
write, and `Recording.finish` after the last one (files, then the reload command): the entry
is prepared before and committed after (see `store`). The caller holds the global lock, so
what a killed apply left behind is recovered first (`recover`), before the new entry takes the
next id. An apply that wrote nothing and changed no file leaves no entry.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from ..host import Host
from ..plan.changes import Change, Plan
from ..statedir import StateDirError, state_dir
from . import audit
from .files import FileRef, FileState, clear_leftover_temp, plan_files, read_state
from .origin import Origin
from .store import HistoryError, Log, Pending, Store

#: The plan's symbols, as in ``plan``'s text output.
_SYMBOLS = {"create": "+", "update": "~", "delete": "-"}

COMPLETE, FAILED, INTERRUPTED = "complete", "failed", "interrupted"


def change_line(change: Change) -> str:
    return f"{_SYMBOLS.get(change.action, '?')} {change.type} {change.address}"


#: Syslog sockets a failure was already reported for: said once per process, never raised.
_TOLD: set[str] = set()


@dataclass
class Audit:
    """Sends the audit lines of a run; a failure is said once (``warn``), never raised."""

    host: Host
    warn: Log

    def send(self, entry: Mapping[str, object]) -> None:
        socket_path = self.host.syslog_socket
        problem = audit.send(socket_path, audit.audit_line(entry))
        if problem and str(socket_path) not in _TOLD:
            _TOLD.add(str(socket_path))
            self.warn(f"the audit line was not sent to syslog ({problem}); the history entry is complete")


def store_of(host: Host, *, create: bool = False) -> Store:
    """The history of ``host``, once the state directory it lies in is checked (`statedir`:
    a symlinked or foreign ``/var/lib/vmreconcile`` is refused, never written or read)."""
    try:
        state_dir(host, create=create, purpose="the history")
    except StateDirError as exc:
        raise HistoryError(exc.errno, exc.strerror) from None
    return Store(host.history_dir)


def recover(host: Host, store: Store, log: Log, auditor: Audit | None = None) -> list[int]:
    """Under the global lock: finish what killed runs left (see `store`). Returns recovered ids."""
    if not store.exists():
        return []
    store.clear_unprepared()
    recovered = []
    for entry_id in store.leftovers(".pending-"):
        pending = store.pending(entry_id)
        if pending.doc.get("outcome") is None:
            for ref in pending.refs:
                clear_leftover_temp(host, ref, log)
            afters = [_read_or_missing(host, ref) for ref in pending.refs]
            doc = pending.commit(outcome=INTERRUPTED, afters=afters, recovered_at=_now_text())
            log(
                f"recorded history entry {entry_id}: its {doc.get('command', 'apply')} was interrupted while "
                f"writing; `vmreconcile history show {entry_id}` lists its files, `rollback {entry_id}` undoes it"
            )
            if auditor is not None:
                auditor.send(doc)
        else:  # killed between the final entry.json and the rename: it is complete
            pending.finalize()
        recovered.append(entry_id)
    return recovered


def recover_leftovers(host: Host, *, log: Log, warn: Log) -> list[int]:
    """`recover` for a run that may write nothing (an empty plan): called first under the lock."""
    return recover(host, store_of(host), log, Audit(host, warn))


def _read_or_missing(host: Host, ref: FileRef) -> FileState:
    try:
        return read_state(host, ref)
    except (OSError, LookupError):
        return FileState(type="other")


def _now_text(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))


class Recording:
    """One run's entry between its preparation and its commit."""

    def __init__(
        self,
        host: Host,
        store: Store,
        pending: Pending,
        refs: list[FileRef],
        befores: list[FileState],
        keep: int,
        auditor: Audit,
    ) -> None:
        self.host = host
        self.store = store
        self.pending = pending
        self.refs = refs
        self.befores = befores
        self.keep = keep
        self.auditor = auditor

    @property
    def id(self) -> int:
        return self.pending.id

    def finish(
        self, *, wrote: bool, errors: list[str] | None = None, interrupted: bool = False
    ) -> dict[str, object] | None:
        """Commit the entry (None when nothing changed after all), prune, send the audit line."""
        afters = [_read_or_missing(self.host, ref) for ref in self.refs]
        changed = any(not a.same_as(b) for a, b in zip(afters, self.befores, strict=True))
        if not wrote and not changed:
            self.pending.discard()
            return None
        outcome = INTERRUPTED if interrupted else FAILED if errors else COMPLETE
        doc = self.pending.commit(outcome=outcome, afters=afters, errors=list(errors or ()), finished=_now_text())
        self.store.prune(self.keep)
        self.auditor.send(doc)
        return doc


def start(
    host: Host,
    origin: Origin,
    refs: list[FileRef],
    *,
    summary: tuple[int, int, int],
    changes: list[str],
    reload_command: str | None,
    log: Log,
    warn: Log,
    now: float | None = None,
) -> Recording:
    """Recover leftovers, snapshot ``refs`` and prepare the entry (before the first write)."""
    store = store_of(host, create=True)
    store.ensure()
    auditor = Audit(host, warn)
    recover(host, store, log, auditor)
    befores = [read_state(host, ref) for ref in refs]
    stamp = time.time() if now is None else now
    add, change, destroy = summary
    meta: dict[str, object] = {
        "time": _now_text(stamp),
        "epoch": int(stamp),
        **origin.as_json(),
        "summary": {"add": add, "change": change, "destroy": destroy},
        "changes": changes,
        "reload_command": reload_command,
    }
    pending = store.begin(meta, list(zip(refs, befores, strict=True)))
    for record, ref in zip(pending.doc["files"], refs, strict=True):  # type: ignore[call-overload]
        note = record["before"].get("not_kept")
        if note is not None:
            warn(f"history entry {pending.id} keeps no copy of {ref.path} ({note}); rollback cannot restore it")
    return Recording(host, store, pending, refs, befores, origin.keep, auditor)


def start_apply(host: Host, plan: Plan, origin: Origin, *, log: Log, warn: Log) -> Recording:
    """`start` for an apply of ``plan``: the files its units write, its summary and changes."""
    return start(
        host,
        origin,
        plan_files(host, plan),
        summary=plan.summary(),
        changes=[change_line(c) for c in plan.changes],
        reload_command=plan.reload_command,
        log=log,
        warn=warn,
    )
