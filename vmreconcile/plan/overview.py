"""A plan as people take it in: counts per domain, and changes that differ only in their names grouped.

A first plan of a 20,000-user domain is 40,000 changes, nearly all alike ("a user with these
limits, and its maildir"). Listing each one buries the few that are different, so the text and
markdown outputs show `Entry` lines instead: one per change, except that from
`GROUP_THRESHOLD` on, changes that differ only in their names become one line ("19,997 users in
example.org (u00003 … u19999)"). What counts as "only the name" is decided per field here:
a fresh hash (each entry has its own fingerprint), a directory that ends in the entry's own
name, the lines a control file keeps per domain. Everything here is pure and works on the
plan's `Change`s; the renderers only lay the result out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..gcpause import collector_paused
from .changes import Action, Change, ChangeType

#: Changes of one shape are grouped when there are at least this many of them.
GROUP_THRESHOLD = 5
#: What a masked hash looks like (`changes.mask_password`): the scheme and a fingerprint.
_MASKED_HASH = re.compile(r"^<(?P<scheme>[^\s<>]+) sha256:[0-9a-f]+>$")
#: Notes that are about one entry start with its address.
_NOTE_ADDRESS = re.compile(r"^(?P<address>[^\s:]+/[^\s]*?): (?P<text>.+)$", re.S)


class PerEntry:
    """A value every entry of a group has its own of (a fresh hash, a directory named after it).

    ``shape`` is what they share: the hash scheme (``yescrypt``), the directory with the name
    replaced by ``{name}``, or empty when nothing is shared (a control line per domain). There
    is one instance per (field, shape), so comparing and hashing them is by identity: a plan
    hashes one per change when it groups them.
    """

    __slots__ = ("field", "shape")
    field: str
    shape: str
    _made: dict[tuple[str, str], PerEntry] = {}

    def __new__(cls, field: str, shape: str = "") -> PerEntry:
        made = cls._made.get((field, shape))
        if made is None:
            made = super().__new__(cls)
            object.__setattr__(made, "field", field)
            object.__setattr__(made, "shape", shape)
            cls._made[(field, shape)] = made
        return made

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PerEntry is immutable")

    def __repr__(self) -> str:
        return f"PerEntry({self.field!r}, {self.shape!r})"


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of an overview: one change, or a group of changes alike but for their names.

    ``before``/``after`` are the change's fields, or for a group the fields its members share,
    with `PerEntry` where each member has its own value. ``with_maildir``: the entry's maildir
    is created (or deleted) along with it; that is a change of its own in the plan, merged
    into this line. ``changes`` is the number of plan changes the line stands for.
    """

    action: Action
    type: ChangeType
    addresses: tuple[str, ...]
    domains: tuple[str, ...]
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    with_maildir: bool
    changes: int
    option: str | None = None  # the option an option change writes

    @property
    def count(self) -> int:
        return len(self.addresses)

    @property
    def grouped(self) -> bool:
        return len(self.addresses) > 1

    @property
    def prefix(self) -> str:
        """What the addresses share up to a ``/`` (``example.org/``): the names are what follows."""
        return common_prefix(self.addresses)

    @property
    def names(self) -> tuple[str, ...]:
        cut = len(self.prefix)
        return tuple(address[cut:] for address in self.addresses)


@dataclass(frozen=True, slots=True)
class DomainCount:
    """How many changes of each action touch one domain (``domain`` None: host-wide ones)."""

    domain: str | None
    add: int
    change: int
    destroy: int

    @property
    def total(self) -> int:
        return self.add + self.change + self.destroy


@dataclass(frozen=True, slots=True)
class NoteLine:
    """A note, or one text shared by the notes of several entries (``addresses``)."""

    text: str
    addresses: tuple[str, ...] = ()


def domain_counts(changes: Iterable[Change]) -> list[DomainCount]:
    """Changes per domain, domains by name, host-wide changes (control files, global options) last."""
    counts: dict[str | None, list[int]] = {}
    slot = {"create": 0, "update": 1, "delete": 2}
    for change in changes:
        counts.setdefault(change.domain, [0, 0, 0])[slot[change.action]] += 1
    names = sorted(name for name in counts if name is not None)
    ordered: list[str | None] = [*names, None] if None in counts else list(names)
    return [DomainCount(name, *counts[name]) for name in ordered]


def entries(
    changes: Sequence[Change], threshold: int | None = GROUP_THRESHOLD, *, merge_maildirs: bool = True
) -> list[Entry]:
    """The overview lines of ``changes`` in plan order; ``threshold`` None: never group.

    A maildir change is merged into the line of the user it belongs to (unless
    ``merge_maildirs`` is false: one line per change); a group takes the place of its first
    member.
    """
    with collector_paused():
        singles = _merge_maildirs(changes) if merge_maildirs else [(c, None) for c in changes]
        if threshold is None:
            return [_entry(change, maildir) for change, maildir in singles]
        shape = _Shaper().shape
        groups: dict[tuple[Any, ...], list[Any]] = {}  # shape -> [shape, (change, maildir), ...]
        ordered = []
        for change, maildir in singles:
            key = shape(change, maildir)
            group = groups.get(key)
            if group is None:
                group = groups[key] = [key]
            group.append((change, maildir))
            ordered.append((group, change, maildir))
        out = []
        for group, change, maildir in ordered:
            if len(group) <= threshold:
                out.append(_entry(change, maildir))
            elif group[1][0] is change:
                out.append(_group(group[1:], group[0]))
        return out


def group_notes(notes: Sequence[str], threshold: int = GROUP_THRESHOLD) -> list[NoteLine]:
    """Notes in order, those that say the same about at least ``threshold`` entries as one line."""
    split = []
    by_text: dict[str, list[str]] = {}
    for note in notes:
        match = _NOTE_ADDRESS.match(note)
        if match:
            by_text.setdefault(match["text"], []).append(match["address"])
        split.append((note, match["text"] if match else None))
    out = []
    done = set()
    for note, text in split:
        if text is None or len(by_text[text]) < threshold:
            out.append(NoteLine(note))
        elif text not in done:
            done.add(text)
            out.append(NoteLine(text, tuple(by_text[text])))
    return out


def _merge_maildirs(changes: Sequence[Change]) -> list[tuple[Change, Change | None]]:
    """Each change with the maildir change that belongs to it; merged maildir changes dropped.

    A maildir belongs to the user or alias change at the same address with the same action,
    or to an update (a directory that moves, an alias that becomes a mailbox) when it is made.
    """
    owners = {c.address: c for c in changes if c.type == "user" or c.type == "alias"}
    merged: dict[int, Change] = {}
    dropped = set()
    for change in changes:
        if change.type != "maildir" or not change.address.endswith("/maildir"):
            continue
        owner = owners.get(change.address[: -len("/maildir")])
        if owner is None or id(owner) in merged:
            continue
        if owner.action == change.action or (owner.action == "update" and change.action == "create"):
            merged[id(owner)] = change
            dropped.add(id(change))
    if not merged:
        return [(c, None) for c in changes]
    return [(c, merged.get(id(c))) for c in changes if id(c) not in dropped]


def _entry(change: Change, maildir: Change | None) -> Entry:
    return Entry(
        action=change.action,
        type=change.type,
        addresses=(change.address,),
        domains=(change.domain,) if change.domain else (),
        before=change.before,
        after=change.after,
        with_maildir=maildir is not None,
        changes=1 + (maildir is not None),
        option=change.target if change.type == "option" else None,
    )


def _group(members: list[tuple[Change, Change | None]], key: tuple[Any, ...]) -> Entry:
    first = members[0][0]
    (before_names, before_values), (after_names, after_values) = key[4], key[5]
    domains = tuple(dict.fromkeys(c.domain for c, _ in members if c.domain))
    return Entry(
        action=first.action,
        type=first.type,
        addresses=tuple(c.address for c, _ in members),
        domains=domains,
        before=_shared_fields(before_names, before_values, [c.before for c, _ in members]),
        after=_shared_fields(after_names, after_values, [c.after for c, _ in members]),
        with_maildir=key[3],
        changes=len(members) + sum(1 for _, m in members if m is not None),
        option=first.target if first.type == "option" else None,
    )


def _shared_fields(names: tuple[str, ...], values: tuple[Any, ...], raw: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A group's fields: where the shape says "each its own" but every member has the same
    value after all (one literal hash given to every user), that value."""
    out = dict(zip(names, values, strict=True))
    for name, value in out.items():
        if isinstance(value, PerEntry):
            first = raw[0][name]
            if all(fields[name] == first for fields in raw):
                out[name] = first
    return out


#: Fields whose value may be an entry's own (`_shaped`) or a list (made hashable).
_SHAPED_FIELDS = frozenset({"password", "directory", "forwards", "base_user", "line", "lines", "value"})


class _Shaper:
    """What a change is apart from its name: equal shapes mean "differ only in their names".

    A shape is built for every change of a plan (200,000 for a 100,000-user first plan), so it
    is kept cheap: the fields are taken as two tuples (names, values) and only the values that
    can be an entry's own are looked at, at positions worked out once per set of field names.
    """

    def __init__(self) -> None:
        self.positions: dict[tuple[str, tuple[str, ...]], tuple[int, ...]] = {}

    def shape(self, change: Change, maildir: Change | None) -> tuple[Any, ...]:
        name = change.address.rpartition("/")[2]
        return (
            change.action,
            change.type,
            change.target if change.type in ("option", "control_line") else None,
            maildir is not None,
            self.fields(change.type, change.before, name),
            self.fields(change.type, change.after, name),
        )

    def fields(self, kind: ChangeType, fields: Mapping[str, Any], name: str) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        names = tuple(fields)
        positions = self.positions.get((kind, names))
        if positions is None:
            positions = tuple(i for i, field in enumerate(names) if field in _SHAPED_FIELDS)
            self.positions[(kind, names)] = positions
        if not positions:
            return names, tuple(fields.values())
        values = list(fields.values())
        for i in positions:
            values[i] = _shaped(kind, names[i], values[i], name)
        return names, tuple(values)


def _shaped(kind: ChangeType, field: str, value: Any, name: str) -> Any:
    """``value`` with what is the entry's own replaced by a `PerEntry` (hashable either way)."""
    if field == "password" and isinstance(value, str):
        match = _MASKED_HASH.match(value)
        return PerEntry(field, match["scheme"]) if match else value
    if field == "directory" and isinstance(value, str):
        head, _, last = value.rpartition("/")
        if own_directory(value, name):
            return PerEntry(field, f"{head}/{{name}}" if head or value.startswith("/") else "{name}")
        return value
    if kind == "control_line" or (kind == "domain" and field == "base_user"):
        return PerEntry(field)
    if isinstance(value, list):
        return tuple(value)
    return value


def own_directory(directory: str, key: str) -> bool:
    """Whether ``directory`` is named after the entry ``key``, as VMailMgr names a user's
    directory: the name as written, with '.' turned into ':' ([compat: userdir])."""
    last = directory.rpartition("/")[2]
    return bool(key) and last.replace(":", ".").lower() == key.replace(":", ".").lower()


def common_prefix(addresses: Sequence[str]) -> str:
    """The part of the addresses before the names: up to the last ``/`` they all share."""
    if len(addresses) < 2:
        head, sep, _ = addresses[0].rpartition("/") if addresses else ("", "", "")
        return head + sep
    first, last = min(addresses), max(addresses)
    size = 0
    for a, b in zip(first, last, strict=False):
        if a != b:
            break
        size += 1
    return first[: first.rfind("/", 0, size) + 1] if "/" in first[:size] else ""
