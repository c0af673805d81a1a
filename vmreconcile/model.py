"""The one model of a mail host, shared by the live reader, the YAML loader and the planner.

Both sources (files on the host, YAML in git) produce these same immutable values, so the
planner is a pure diff of two `HostState`s and `export` is just "live model -> YAML"
(octoDNS's populate-two-zones idea). Standard library only: the runtime imports it too.

Conventions:
- limits and expiry use ``None`` for VMailMgr's ``UINT_MAX`` ("-", unlimited / never);
- names are ``str``; bytes that are not UTF-8 survive as surrogate escapes (see `to_bytes`);
- tuples everywhere, so every value is hashable and comparable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

UINT_MAX = 0xFFFFFFFF

#: An option value: the stripped first line for string/dir/unsigned options,
#: a tuple of items for list options (``postmaster-aliases``).
OptionValue = str | tuple[str, ...]

#: The qmail control files vmreconcile reads (and, for the first three, edits).
CONTROL_FILES = ("rcpthosts", "morercpthosts", "virtualdomains", "locals", "me")

FORMAT_VERSION = 1


def to_bytes(text: str) -> bytes:
    """Encode a model string back to the exact bytes it was read from."""
    return text.encode("utf-8", "surrogateescape")


def from_bytes(raw: bytes) -> str:
    """Decode bytes from a table or file without ever failing or losing a byte."""
    return raw.decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class VirtualUser:
    """One entry of a base user's ``passwd.cdb`` (reference §1.3): a mailbox, an alias or both.

    ``name`` is the table key (ASCII-lowercased). ``has_mailbox`` is the flag as it will be
    encoded, already false when ``directory`` is empty (the decoder forces that).
    """

    name: str
    password: str = "*"
    directory: str = ""
    forwards: tuple[str, ...] = ()
    personal: str = ""
    hard_quota: int | None = None
    soft_quota: int | None = None
    message_size_limit: int | None = None
    message_count_limit: int | None = None
    created: int = 0
    expires: int | None = None
    has_mailbox: bool = True
    mailbox_enabled: bool = True

    @property
    def is_alias(self) -> bool:
        """True when delivery only forwards and the entry cannot log in (§1.7)."""
        return not (self.has_mailbox and self.directory)

    def with_changes(self, **changes: object) -> VirtualUser:
        return replace(self, **changes)


#: Fields of `VirtualUser` in their documented order (show JSON, plan diffs, export).
USER_FIELDS = (
    "name",
    "password",
    "directory",
    "has_mailbox",
    "mailbox_enabled",
    "forwards",
    "personal",
    "hard_quota",
    "soft_quota",
    "message_size_limit",
    "message_count_limit",
    "created",
    "expires",
)


@dataclass(frozen=True, slots=True)
class Domain:
    """A virtual domain: its names, the base user that owns it and that user's table.

    ``users`` keeps table order (VMailMgr lists in creation order). ``maildirs`` is the set of
    user directories (relative to the base user's home, as stored) that exist as maildirs,
    so the planner can tell a missing mailbox from a present one.
    """

    name: str
    base_user: str
    wildcard: bool = False
    domain_aliases: tuple[str, ...] = ()
    options: Mapping[str, OptionValue] = field(default_factory=dict)
    qmail_default: str | None = None
    users: tuple[VirtualUser, ...] = ()
    maildirs: frozenset[str] = frozenset()

    def user(self, name: str) -> VirtualUser | None:
        key = ascii_lower(name)
        for user in self.users:
            if user.name == key:
                return user
        return None

    @property
    def virtualdomains_keys(self) -> tuple[str, ...]:
        """Every ``control/virtualdomains`` key this domain owns, primary first."""
        keys = [self.name]
        if self.wildcard:
            keys.append("." + self.name)
        keys.extend(self.domain_aliases)
        return tuple(keys)


@dataclass(frozen=True, slots=True)
class HostState:
    """Everything vmreconcile manages on one host (or wants there).

    ``control`` maps a control file name to its lines (without newlines), or is missing the
    name when the file does not exist. ``options`` are the global ``/etc/vmailmgr`` options.
    """

    options: Mapping[str, OptionValue] = field(default_factory=dict)
    control: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    domains: tuple[Domain, ...] = ()
    format_version: int = FORMAT_VERSION

    def domain(self, name: str) -> Domain | None:
        for domain in self.domains:
            if domain.name == name:
                return domain
        return None


def _ascii_lower(text: str) -> str:
    """Lowercase A-Z only, as VMailMgr's ``mystring::lower`` does in the C locale."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def ascii_lower(text: str) -> str:
    """Lowercase A-Z only (C-locale ``tolower``); every other character is kept."""
    return text.lower() if text.isascii() else _ascii_lower(text)
