"""Spec + live state -> `Plan`: resolve, diff, and record what apply needs (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ..desired.spec import Spec
from ..model import HostState
from .changes import Change, Plan, table_digest
from .diff import diff
from .resolve import SecretReader, live_counterparts, passwd_changeable, resolve


def build_plan(
    spec: Spec,
    live: HostState,
    *,
    now: int,
    secrets: SecretReader,
    purge_mailboxes: bool = False,
    live_changeable: tuple[str, ...] | None = None,
    manage_changeable: bool = True,
    targets: tuple[str, ...] | None = None,
    offline: bool = False,
    unchanged: frozenset[str] = frozenset(),
) -> Plan:
    """The plan that makes ``live`` what ``spec`` asks for.

    ``live_changeable`` is the current authpipe list (None when the file is missing);
    ``manage_changeable=False`` leaves that file out (a ``--state`` snapshot does not carry it).
    ``targets`` limits the plan to those domains (``--domain``): the spec is cut down to them,
    ``live`` is expected to hold only them, and the authpipe list is left alone. ``offline``:
    ``live`` is a saved snapshot (``plan --state``); secrets that cannot be read are notes.
    ``unchanged``: domains taken as they are live (`resolve`).
    """
    if targets is not None:
        spec = restrict_spec(spec, targets)
        manage_changeable = False
    desired, notes = resolve(spec, live, now, secrets, offline, unchanged)
    return plan_for_desired(
        desired,
        live,
        notes=notes,
        reload_command=spec.reload_command,
        changeable=passwd_changeable(spec) if manage_changeable else None,
        live_changeable=live_changeable,
        purge_mailboxes=purge_mailboxes,
        targets=targets,
        offline=offline,
        size_spellings=spec.size_spellings,
    )


def plan_for_desired(
    desired: HostState,
    live: HostState,
    *,
    notes: list[str] | None = None,
    reload_command: str | None = None,
    changeable: tuple[str, ...] | None = None,
    live_changeable: tuple[str, ...] | None = None,
    purge_mailboxes: bool = False,
    targets: tuple[str, ...] | None = None,
    offline: bool = False,
    size_spellings: Mapping[int, str] | None = None,
) -> Plan:
    """The plan that turns ``live`` into ``desired`` (already resolved): the changes, and the
    brake's counts and the tables' digests taken from ``live``. ``build_plan`` ends here, and
    so does ``apply --plan``, which recomputes a saved plan from its desired state and the host
    as it is (nothing in the file but the desired state decides what is written)."""
    notes = list(notes or ())
    changes = diff(
        desired, live, purge_mailboxes=purge_mailboxes, changeable=changeable, live_changeable=live_changeable
    )
    for change in changes:
        if change.action == "update" and "directory" in change.before and change.before["directory"]:
            notes.append(
                f"{change.address}: directory changes from {change.before['directory']} to "
                f"{change.after['directory']}; mail is not moved and the old directory stays"
            )
        if change.action == "delete" and change.type in ("user", "alias") and not purge_mailboxes:
            directory = change.before.get("directory")
            if directory and change.before.get("has_mailbox"):
                notes.append(
                    f"{change.address}: table entry removed; its mailbox {directory} stays in "
                    f"~{_base_user(desired, change.domain)} (use --purge-mailboxes to delete it)"
                )
    return Plan(
        changes=tuple(changes),
        desired=desired,
        live=live,
        notes=tuple(notes),
        live_entry_counts=_entry_counts(desired, live),
        reload_command=reload_command,
        changeable=changeable,
        purge_mailboxes=purge_mailboxes,
        targets=targets,
        table_digests=_table_digests(changes, desired, live),
        offline=offline,
        size_spellings=dict(size_spellings or {}),
    )


def _table_digests(changes: list[Change], desired: HostState, live: HostState) -> dict[str, str]:
    """The live table's digest for every domain whose table the plan rewrites."""
    counterparts = live_counterparts(desired.domains, live)
    out = {}
    for name in {c.domain for c in changes if c.type in ("user", "alias") and c.domain}:
        old = counterparts.get(name)
        out[name] = table_digest(old.users if old else ())
    return out


class UnknownTarget(ValueError):
    """``--domain`` names a domain the configuration does not have."""


def restrict_spec(spec: Spec, targets: tuple[str, ...]) -> Spec:
    names = {d.name for d in spec.domains}
    missing = [t for t in targets if t not in names]
    if missing:
        raise UnknownTarget(f"--domain {', '.join(missing)}: not a domain of the configuration")
    return replace(spec, domains=tuple(d for d in spec.domains if d.name in targets))


def _base_user(state: HostState, domain: str | None) -> str:
    found = state.domain(domain) if domain else None
    return found.base_user if found else "?"


def _entry_counts(desired: HostState, live: HostState) -> dict[str, int]:
    """Live entries per domain, under the desired name (a domain may be matched by base user)."""
    counts = {d.name: len(d.users) for d in live.domains}
    counts.update((name, len(old.users)) for name, old in live_counterparts(desired.domains, live).items())
    return counts
