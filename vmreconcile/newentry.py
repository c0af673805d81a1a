"""What VMailMgr's tools give a new table entry, and where ``vadduser`` puts its aliases (pure).

`resolve` completes a configuration with these values and `export` leaves out exactly the
fields that equal them, and an export must rebuild the same table through resolve: so both
use this one module, never a copy ([compat: admin-tools], [compat: entry-shapes]).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .formats.config import layered_value
from .formats.userdir import userdir
from .model import UINT_MAX, USER_FIELD_TABLE, OptionValue, VirtualUser, ascii_lower

#: Fields whose new-entry value comes from a VMailMgr option (``default-hardquota`` ...).
_OPTION_FIELDS = tuple((f.name, f.option) for f in USER_FIELD_TABLE if f.option and f.option != "default-expiry")


class DomainDefaults:
    """The option values that shape a new entry of one domain."""

    __slots__ = (
        "user_dir",
        "bits",
        "slices",
        "limits",
        "default_expiry",
        "default_username",
        "postmaster_aliases",
        "postmaster_email",
    )

    def __init__(self, domain_options: Mapping[str, OptionValue], global_options: Mapping[str, OptionValue]) -> None:
        def get(name: str) -> str | int | tuple[str, ...]:
            return layered_value(name, domain_options, global_options)

        def unsigned(name: str) -> int:
            value = get(name)
            assert isinstance(value, int)
            return value

        def text(name: str) -> str:
            value = get(name)
            assert isinstance(value, str)
            return value

        self.user_dir = text("user-dir")
        self.bits = unsigned("user-dir-bits")
        self.slices = unsigned("user-dir-slices")
        #: field name -> a new entry's value (None: VMailMgr's UINT_MAX, unlimited)
        self.limits: dict[str, int | None] = {}
        for field, option in _OPTION_FIELDS:
            value = unsigned(option)
            self.limits[field] = None if value == UINT_MAX else value
        self.default_expiry = unsigned("default-expiry")
        self.default_username = text("default-username")
        aliases = get("postmaster-aliases")
        assert isinstance(aliases, tuple)
        self.postmaster_aliases = tuple(ascii_lower(a) for a in aliases)
        self.postmaster_email = text("postmaster-email")

    @classmethod
    def of(cls, domain_options: Mapping[str, OptionValue], global_options: Mapping[str, OptionValue]) -> DomainDefaults:
        return cls(domain_options, global_options)

    def userdir(self, name: str) -> str:
        """Where VMailMgr puts a new mailbox for ``name`` ([compat: userdir]), without ``./``."""
        return userdir(name, self.user_dir, self.bits, self.slices)

    def directory(self, name: str) -> str:
        """The directory ``vadduser``/``vaddalias`` store for a new entry: ``./`` + userdir."""
        return "./" + self.userdir(name)

    def expiry(self, now: int) -> int | None:
        """A new entry's expiry: ``now + default-expiry``, never when unset or past 32 bits."""
        if self.default_expiry == UINT_MAX:
            return None
        expires = now + self.default_expiry
        return None if expires >= UINT_MAX else expires

    def new_entry(self, name: str, now: int, **fields: object) -> VirtualUser:
        """A fresh entry with VMailMgr's defaults ([compat: admin-tools]) and ``fields`` on top."""
        base = VirtualUser(name=ascii_lower(name), password="*", created=now, expires=self.expiry(now), **self.limits)
        return base.with_changes(**fields) if fields else base

    def new_user(self, name: str, now: int) -> VirtualUser:
        """``vadduser NAME``: a mailbox in ``./`` + userdir(name as typed)."""
        return self.new_entry(name, now, directory=self.directory(name))

    def new_alias(self, name: str, now: int) -> VirtualUser:
        """``vaddalias NAME`` (``vadduser -D -P``): the same directory, no mailbox."""
        return self.new_entry(name, now, directory=self.directory(name), has_mailbox=False)

    def new_of_kind(self, kind: str, name: str, now: int) -> VirtualUser:
        """`new_user` for ``kind`` ``user``, `new_alias` for ``alias``."""
        return self.new_alias(name, now) if kind == "alias" else self.new_user(name, now)

    def vadduser_alias(self, name: str, user: str, now: int) -> VirtualUser:
        """An alias as ``vadduser USER NAME`` makes it at ``now``: userdir(NAME) without ``./``,
        no mailbox, one forward to USER (a table key)."""
        return self.new_entry(name, now, directory=self.userdir(name), forwards=(user,), has_mailbox=False)

    def postmaster_alias(self, name: str, now: int) -> VirtualUser:
        """One of ``vsetup``'s postmaster aliases (forwarding to ``postmaster-email``)."""
        return self.new_entry(
            name, now, directory=self.userdir(name), forwards=(self.postmaster_email,), has_mailbox=True
        )

    def catch_all(self, target: str, now: int) -> VirtualUser:
        """The ``default-username`` entry forwarding to ``target``."""
        return self.new_entry(
            self.default_username,
            now,
            directory=self.directory(self.default_username),
            forwards=(target,),
            has_mailbox=False,
        )

    def is_vadduser_alias_shape(self, entry: VirtualUser, user: VirtualUser) -> bool:
        """True when ``entry`` has the shape only ``vadduser USER ALIAS`` gives ([compat: entry-shapes]):
        ``*``, directory userdir(alias) without ``./`` (vaddalias writes ``./``), no mailbox, one
        forward to USER (a mailbox), USER's creation second."""
        return (
            entry is not user
            and not user.is_alias
            and entry.forwards == (user.name,)
            and not entry.has_mailbox
            and entry.password == "*"
            and entry.created == user.created
            and entry.directory == self.userdir(entry.name)
        )


def qmail_default_for(bindir: str) -> str:
    """The ``.qmail-default`` vsetup writes for the runtime in ``bindir`` ([compat: admin-tools])."""
    return f"|{bindir.rstrip('/')}/vdeliver\n"


def place_vadduser_extras(entries: list[VirtualUser], defaults: DomainDefaults) -> list[VirtualUser]:
    """Put each alias made by ``vadduser USER ALIAS`` right after USER, where VMailMgr wrote it.

    An export lists such an alias under ``aliases:`` (after every user) unless `vadduser_extras`
    could fold it into the user's ``aliases: [...]``; this puts it back in table order.
    """
    by_name = {e.name: e for e in entries}
    extras: dict[str, list[VirtualUser]] = {}
    rest = []
    for entry in entries:
        target = by_name.get(entry.forwards[0]) if len(entry.forwards) == 1 else None
        if target is not None and defaults.is_vadduser_alias_shape(entry, target):
            extras.setdefault(target.name, []).append(entry)
        else:
            rest.append(entry)
    out = []
    for entry in rest:
        out.append(entry)
        out.extend(extras.get(entry.name, ()))
    return out


def vadduser_extras(entries: Iterable[VirtualUser], defaults: DomainDefaults) -> dict[str, list[str]]:
    """User key -> the aliases ``vadduser USER ALIAS...`` made with it, written as ``aliases: [...]``.

    Only entries exactly as `DomainDefaults.vadduser_alias` makes them qualify, and only when
    they follow the user in the table: resolve then rebuilds them in place.
    """
    table = tuple(entries)
    extras: dict[str, list[str]] = {}
    for index, user in enumerate(table):
        if not user.has_mailbox:
            continue
        following = index + 1
        while following < len(table) and _is_extra_of(table[following], user, defaults):
            extras.setdefault(user.name, []).append(table[following].name)
            following += 1
    return extras


def _is_extra_of(alias: VirtualUser, user: VirtualUser, defaults: DomainDefaults) -> bool:
    if alias.forwards != (user.name,):
        return False
    expected = defaults.vadduser_alias(alias.name, user.name, user.created)
    return alias.astuple()[1:] == expected.astuple()[1:]  # the key is compared as it is
