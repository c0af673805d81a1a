"""Rollback: back to the state just before a history entry, file by file, byte for byte.

For every file the entry recorded, the rollback compares the file as it is *now* with the
entry's "after" (how the apply left it) and "before" (what it replaced):

* now = before: nothing to do for it (already as it was);
* now = after: it is restored: the "before" bytes, mode and owner written back (``~``), a file
  the apply created removed (``-``), a file it removed written again (``+``);
* anything else: the file changed since in a way the entry does not explain (a later apply,
  ``vadduser``, a password changed through Courier): the rollback is refused, naming the file
  and the later entry that changed it if there is one, unless ``--force`` (then it is
  restored anyway).

A file that was a symlink or not a regular file before is not recreated (in a home that would
put back what a base user planted). Writes go through the same locked, atomic, symlink-safe
writer as apply (`files.restore`), each re-checked under the writers' lock. Directories are
never removed: a maildir an apply made stays, with its mail. The modification time is not set
back: the restored file is new content to every cache and backup that looks at it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..apply.execute import ApplyResult, Executor, run_newmrh, run_reload
from ..formats.control import CONTROL_FILES, NEWMRH, RELOAD
from ..host import Host
from ..model import HostState
from ..plan.changes import Plan
from ..printable import printable
from .files import CONTROL, FileRef, FileState, described, read_state, restore
from .origin import DEFAULT_KEEP, Origin, invoking_user
from .record import Recording, start, store_of
from .store import Log, Store

RESTORE, CREATE, REMOVE, NOTHING, SKIP, CONFLICT = "restore", "create", "remove", "nothing", "skip", "conflict"
_SYMBOLS = {RESTORE: "~", CREATE: "+", REMOVE: "-"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """What the rollback does to one file."""

    ref: FileRef
    action: str
    wanted: FileState  # the entry's "before"
    current: FileState
    reason: str = ""

    @property
    def writes(self) -> bool:
        return self.action in _SYMBOLS


@dataclass(frozen=True, slots=True)
class RollbackPlan:
    entry: Mapping[str, object]
    steps: tuple[Step, ...]

    @property
    def entry_id(self) -> int:
        return int(self.entry["id"])  # type: ignore[call-overload]

    @property
    def conflicts(self) -> list[Step]:
        return [s for s in self.steps if s.action == CONFLICT]

    @property
    def writing(self) -> list[Step]:
        return [s for s in self.steps if s.writes]

    @property
    def reload_command(self) -> str | None:
        command = self.entry.get("reload_command")
        return command if isinstance(command, str) else None

    def summary(self) -> tuple[int, int, int]:
        """(files created, restored, removed)."""
        count = {a: sum(1 for s in self.steps if s.action == a) for a in (CREATE, RESTORE, REMOVE)}
        return count[CREATE], count[RESTORE], count[REMOVE]


def plan_rollback(host: Host, store: Store, entry_id: int, *, force: bool = False) -> RollbackPlan:
    """What rolling back entry ``entry_id`` would do on the host as it is now."""
    entry = store.load(entry_id)
    later = [store.load(i) for i in store.ids() if i > entry_id]
    steps = []
    files = entry.get("files")
    for record in files if isinstance(files, list) else []:
        ref = FileRef.from_json(record)
        before_doc, after_doc = record.get("before") or {}, record.get("after") or {}
        blob = before_doc.get("blob")
        wanted = described(before_doc, store.blob(entry_id, blob) if isinstance(blob, str) else None)
        after = described(after_doc)
        current = read_state(host, ref)
        step = _step(ref, wanted, after, after_doc, current, later, force)
        if step.action == SKIP and isinstance(before_doc.get("not_kept"), str):
            step = replace(step, reason=f"no copy was kept ({before_doc['not_kept']}); not restored")
        steps.append(step)
    return RollbackPlan(entry, tuple(steps))


def _step(
    ref: FileRef,
    wanted: FileState,
    after: FileState,
    after_doc: Mapping[str, object],
    current: FileState,
    later: Sequence[Mapping[str, object]],
    force: bool,
) -> Step:
    if current.same_as(wanted):
        return Step(ref=ref, action=NOTHING, wanted=wanted, current=current, reason="already as before")
    if wanted.type not in ("file", "missing"):
        what = f"a symbolic link to {wanted.link}" if wanted.type == "symlink" else "not a regular file"
        return Step(ref=ref, action=SKIP, wanted=wanted, current=current, reason=f"was {what} before; not recreated")
    unchanged = _matches(current, after, after_doc)
    if not unchanged and not force:
        by = [int(e["id"]) for e in later if _touches(e, ref)]  # type: ignore[call-overload]
        reason = (
            f"changed since by {' and '.join(f'history entry {i}' for i in by)} (roll back {by[-1]} first)"
            if by
            else "changed since by something else (vadduser, a password change, an edit)"
        )
        return Step(ref=ref, action=CONFLICT, wanted=wanted, current=current, reason=reason)
    action = CREATE if not current.exists else REMOVE if not wanted.exists else RESTORE
    reason = "" if unchanged else "changed since; restored anyway (--force)"
    return Step(ref=ref, action=action, wanted=wanted, current=current, reason=reason)


def _matches(current: FileState, after: FileState, after_doc: Mapping[str, object]) -> bool:
    """The file is as the entry left it (by digest: the "after" bytes are not kept)."""
    return current.type == after.type and current.sha256 == after_doc.get("sha256") and current.link == after.link


def _touches(entry: Mapping[str, object], ref: FileRef) -> bool:
    files = entry.get("files")
    return isinstance(files, list) and any(isinstance(f, dict) and f.get("path") == ref.path for f in files)


def step_line(step: Step) -> str:
    """``~ table /home/vbase1/passwd.cdb``: one step as the entry's change list shows it."""
    return f"{_SYMBOLS.get(step.action, '?')} {step.ref.kind} {step.ref.path}"


def start_rollback(host: Host, plan: RollbackPlan, *, log: Log, warn: Log) -> Recording:
    """The rollback's own history entry, prepared before its first write (`record.start`)."""
    store = store_of(host)
    user, uid = invoking_user()
    origin = Origin(command="rollback", user=user, uid=uid, keep=latest_keep(store), rollback_of=plan.entry_id)
    return start(
        host,
        origin,
        [s.ref for s in plan.writing],
        summary=plan.summary(),
        changes=[step_line(s) for s in plan.writing],
        reload_command=plan.reload_command,
        log=log,
        warn=warn,
    )


def latest_keep(store: Store) -> int:
    """The retention the latest entry was made with (a rollback has no configuration)."""
    ids = store.ids()
    keep = store.load(ids[-1]).get("keep") if ids else None
    return keep if isinstance(keep, int) and keep >= 1 else DEFAULT_KEEP


def render(plan: RollbackPlan) -> str:
    """The rollback plan as text, like ``plan``'s."""
    entry = plan.entry
    lines = [
        f"Rollback of history entry {plan.entry_id} ({entry.get('command')} by {entry.get('user')} "
        f"at {entry.get('time')}): back to the files as they were before it."
    ]
    for step in plan.steps:
        symbol = _SYMBOLS.get(step.action, "!" if step.action == CONFLICT else " ")
        label = {RESTORE: "restore", CREATE: "recreate", REMOVE: "remove", NOTHING: "keep"}.get(
            step.action, step.action
        )
        size = (
            f" ({len(step.wanted.data)} bytes, mode {step.wanted.mode:04o})"
            if step.action in (RESTORE, CREATE) and step.wanted.data is not None and step.wanted.mode is not None
            else ""
        )
        note = f": {step.reason}" if step.reason else ""
        lines.append(f"{symbol} {label} {step.ref.kind} {step.ref.path}{size}{note}")
    add, change, destroy = plan.summary()
    lines.append("")
    lines.append(f"Rollback: {add} to recreate, {change} to restore, {destroy} to remove.")
    return "".join(printable(line) + "\n" for line in lines)  # paths and users are tenants' text


def carry_out(host: Host, plan: RollbackPlan, log: Log) -> ApplyResult:
    """Write every step back (stopping at the first error), then run what qmail needs."""
    runner = Executor(host, Plan(changes=(), desired=HostState()), log)
    result = runner.result
    for step in plan.writing:
        try:
            restore(host, step.ref, step.wanted, step.current, log)
        except (OSError, ValueError) as exc:
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror and not exc.filename else str(exc)
            result.errors.append(f"{step.ref.path}: {message}")
            return result
        result.written.append(step.ref.path)
    actions = set()
    for step in plan.writing:
        name = step.ref.path.rsplit("/", 1)[-1]
        if step.ref.kind == CONTROL and name in CONTROL_FILES:
            actions.add(CONTROL_FILES[name].after_write)
    if NEWMRH in actions:
        run_newmrh(host, runner)
    if RELOAD in actions:
        run_reload(host, plan.reload_command, runner)
    return result
