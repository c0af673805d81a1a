"""The plan's vocabulary: one `Change` per thing that differs, and the `Plan` that orders them.

As in octoDNS, every change is a small value that describes itself (action, type, address,
per-field before/after) and the safety thresholds live on the plan, not in the CLI. A change
never carries a password hash: `mask_password` replaces it with a fingerprint before the
change is built, so no renderer can leak one. The fresh hashes live only in ``Plan.desired``,
which is what apply writes and what a saved plan file (mode 0600) holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..formats.control import CONTROL_FILES, RELOAD
from ..formats.hashing import scheme_of
from ..formats.vpwentry import encode_record, user_key
from ..model import HostState, VirtualUser
from ..showjson import hash_digest, is_redacted

Action = Literal["create", "update", "delete"]
ChangeType = Literal["control_line", "option", "domain", "user", "alias", "maildir"]
Part = Literal["control", "tables", "runtime-config"]

#: Execution rank. Everything in a domain's home comes first, creates before deletes (options,
#: setup, new maildirs, table entries created or changed, then entries deleted, maildirs purged,
#: options removed); the control files come last, lines added before lines removed. So mail is
#: accepted for a domain (``rcpthosts``) only once its table and mailboxes exist, and a domain
#: whose home fails while apply writes is known to have failed before any control line is
#: written: its lines are kept as they were (`apply.execute.lines_without_failed`). A domain's
#: deletes do not depend on its routing (a deleted entry's mail is refused by the table either
#: way). Only a domain being removed would stop being routed before its setup goes; the planner
#: never removes one (domains the YAML does not name are left alone), so nothing in a home is
#: ever written after a control file.
_RANK = {
    ("create", "option"): 0,
    ("update", "option"): 0,
    ("create", "domain"): 1,
    ("update", "domain"): 1,
    ("create", "maildir"): 2,
    ("create", "user"): 3,
    ("create", "alias"): 3,
    ("update", "user"): 3,
    ("update", "alias"): 3,
    ("delete", "user"): 4,
    ("delete", "alias"): 4,
    ("delete", "maildir"): 5,
    ("delete", "option"): 6,
    ("create", "control_line"): 7,
    ("update", "control_line"): 7,
    ("delete", "control_line"): 8,
    ("delete", "domain"): 9,
}

PLAN_FORMAT_VERSION = 1


def table_digest(users: Iterable[VirtualUser]) -> str:
    """sha256 over the entries as they would be encoded, in table order."""
    digest = hashlib.sha256()
    for user in users:
        key = user_key(user.name)
        record = encode_record(user)
        digest.update(len(key).to_bytes(4, "little") + key + len(record).to_bytes(4, "little") + record)
    return digest.hexdigest()


def mask_password(value: str) -> str:
    """What outputs show instead of a hash: the no-login markers as is, else scheme + fingerprint.

    The fingerprint is the first 12 hex digits of the sha256 a redacted ``show`` prints, so a
    plan line can be matched against a redacted state without revealing anything crackable.
    """
    if value == "*" or value == "" or (value.startswith("!") and len(value) <= 1):
        return value
    if is_redacted(value) and not value.startswith("sha256:"):
        return f"<{value}>"
    scheme = "redacted" if is_redacted(value) else (scheme_of(value) or "hash")
    if scheme in ("null-crypt", "old-md5"):  # the string is the password in disguise: no digest
        return f"<{scheme}>"
    return f"<{scheme} sha256:{hash_digest(value)[:12]}>"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One difference between live and desired, described per field (built with keywords only).

    ``before``/``after`` hold only the fields that differ for an update, every field for a
    create (``after``) or delete (``before``); values are JSON-ready (lists, not tuples).
    ``part`` tells handlers what to reload: ``control`` (qmail-send), ``tables`` (nothing:
    every lookup opens the table afresh), ``runtime-config`` (options, ``.qmail-default``).
    """

    action: Action
    type: ChangeType
    address: str
    part: Part
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    domain: str | None = None
    target: str | None = None  # the file, option or entry the change writes (for the executor)

    @property
    def rank(self) -> int:
        return _RANK[(self.action, self.type)]

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "type": self.type,
            "address": self.address,
            "part": self.part,
            "before": dict(self.before),
            "after": dict(self.after),
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """Ordered changes plus everything apply needs to carry them out without re-resolving."""

    changes: tuple[Change, ...]
    desired: HostState
    live_checksum: str | None = None  # set when loaded from a plan file; else computed from ``live``
    notes: tuple[str, ...] = ()
    live_entry_counts: Mapping[str, int] = field(default_factory=dict)
    reload_command: str | None = None
    changeable: tuple[str, ...] | None = None
    purge_mailboxes: bool = False
    targets: tuple[str, ...] | None = None  # plan --domain: only these domains were read and planned
    #: domain -> `table_digest` of the live entries, for each table the plan rewrites: apply
    #: re-reads the table under its temp-file lock and refuses to overwrite a table that moved
    table_digests: Mapping[str, str] = field(default_factory=dict)
    offline: bool = False  # made against a saved snapshot (plan --state): for review, never applied
    #: domains that could not be planned (a broken home, a corrupt table ...), one line each
    #: naming the domain and the path; the plan covers the others and can only be applied to
    #: them with ``--domain``
    errors: tuple[str, ...] = ()
    #: byte count -> the YAML's spelling of it, so outputs show ``500 MiB`` as it was written
    size_spellings: Mapping[int, str] = field(default_factory=dict, compare=False, repr=False)
    live: HostState | None = field(default=None, compare=False, repr=False)

    def checksum(self) -> str:
        """The live state's checksum (computed on demand: it costs a second per 100,000 entries)."""
        if self.live_checksum is not None:
            return self.live_checksum
        from .checksum import state_checksum

        return state_checksum(self.live if self.live is not None else HostState())

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def reload_to_run(self) -> str | None:
        """The ``qmail.reload`` command apply runs, as root, once this plan is written (a
        control file qmail-send rereads on a HUP changes: ``virtualdomains``), else None. Every
        plan format shows it, so a plan that will run a command is never silent about it."""
        if not self.reload_command:
            return None
        rereads = {c.target for c in self.changes if c.type == "control_line"}
        due = any(name in CONTROL_FILES and CONTROL_FILES[name].after_write == RELOAD for name in rereads)
        return self.reload_command if due else None

    def summary(self) -> tuple[int, int, int]:
        """(to add, to change, to destroy)."""
        add = sum(1 for c in self.changes if c.action == "create")
        change = sum(1 for c in self.changes if c.action == "update")
        return add, change, len(self.changes) - add - change

    def brake_violations(self, threshold: float = 0.30, minimum: int = 10) -> list[str]:
        """Domains where this plan would delete or change too many existing entries (octoDNS brake).

        Counted: updates and deletes of users/aliases, against the live number of entries,
        only for domains with at least ``minimum`` entries.
        """
        touched: dict[str, int] = {}
        for change in self.changes:
            if change.type in ("user", "alias") and change.action in ("update", "delete") and change.domain:
                touched[change.domain] = touched.get(change.domain, 0) + 1
        out = []
        for domain, count in sorted(touched.items()):
            total = self.live_entry_counts.get(domain, 0)
            if total >= minimum and count > threshold * total:
                out.append(
                    f"{domain}: {count} of {total} existing users/aliases would be changed or deleted "
                    f"(more than {threshold:.0%}); use --force if this is intended"
                )
        return out

    def to_json(self) -> dict[str, Any]:
        from .overview import domain_counts

        add, change, destroy = self.summary()
        by_domain = [
            {"domain": c.domain, "add": c.add, "change": c.change, "destroy": c.destroy}
            for c in domain_counts(self.changes)
        ]
        return {
            "format_version": PLAN_FORMAT_VERSION,
            "live_checksum": self.checksum(),
            "summary": {"add": add, "change": change, "destroy": destroy, "by_domain": by_domain},
            "changes": [c.to_json() for c in self.changes],
            "notes": list(self.notes),
            "errors": list(self.errors),
            "reload": self.reload_to_run,
        }
