"""The one model of a mail host, shared by the live reader, the YAML loader and the planner.

Both sources (files on the host, YAML in git) produce these same immutable values, so the
planner is a pure diff of two `HostState`s and `export` is just "live model -> YAML"
(octoDNS's populate-two-zones idea). Standard library only: the runtime imports it too.

The value classes are hand-rolled immutable records (`Record`) rather than dataclasses: the
login and delivery programs import this module on every start, and ``dataclasses`` pulls in
``inspect``, ``re`` and ``typing`` (tens of milliseconds on a busy host).

Conventions:
- limits and expiry use ``None`` for VMailMgr's ``UINT_MAX`` ("-", unlimited / never);
- names are ``str``; bytes that are not UTF-8 survive as surrogate escapes (see `to_bytes`);
- tuples everywhere, so every value is hashable and comparable.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the runtime must not pay for typing at start-up
    from collections.abc import Mapping

UINT_MAX = 0xFFFFFFFF

#: An option value: the stripped first line for string/dir/unsigned options,
#: a tuple of items for list options (``postmaster-aliases``).
OptionValue = str | tuple[str, ...]

#: The qmail control files vmreconcile reads (and, for the first three, edits).
CONTROL_FILES = ("rcpthosts", "morercpthosts", "virtualdomains", "locals", "me")

FORMAT_VERSION = 1


class Record:
    """An immutable value with named fields, equality, hashing, a repr and `with_changes`.

    Subclasses list ``_fields`` (constructor order) and ``_defaults`` (name -> default; a
    ``dict``/``frozenset``/``tuple`` default is shared safely because it is never mutated).
    """

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _defaults: dict[str, object] = {}

    def __init__(self, *args: object, **kwargs: object) -> None:
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(self._fields)} positional arguments")
        for name, value in zip(self._fields, args, strict=False):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__} got two values for {name!r}")
            kwargs[name] = value
        for name in self._fields:
            if name in kwargs:
                value = kwargs.pop(name)
            elif name in self._defaults:
                value = self._defaults[name]
                if type(value) is dict:
                    value = {}
            else:
                raise TypeError(f"{type(self).__name__} missing required argument {name!r}")
            object.__setattr__(self, name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(kwargs)}")

    @classmethod
    def from_values(cls, values: tuple):
        """Build from a complete tuple in ``_fields`` order (the decoders' fast path)."""
        if len(values) != len(cls._fields):
            raise TypeError(f"{cls.__name__} needs {len(cls._fields)} values")
        self = object.__new__(cls)
        for name, value in zip(cls._fields, values, strict=True):
            object.__setattr__(self, name, value)
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use with_changes()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def astuple(self) -> tuple:
        return tuple(getattr(self, name) for name in self._fields)

    def asdict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self._fields}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.astuple() == other.astuple()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self.astuple()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple:
        return (type(self), self.astuple())

    def with_changes(self, **changes: object):
        """A copy with some fields replaced (the records are immutable)."""
        return type(self)(**{**self.asdict(), **changes})


def to_bytes(text: str) -> bytes:
    """Encode a model string back to the exact bytes it was read from."""
    return text.encode("utf-8", "surrogateescape")


def from_bytes(raw: bytes) -> str:
    """Decode bytes from a table or file without ever failing or losing a byte."""
    return raw.decode("utf-8", "surrogateescape")


class VirtualUser(Record):
    """One entry of a base user's ``passwd.cdb`` (reference §1.3): a mailbox, an alias or both.

    ``name`` is the table key (ASCII-lowercased). ``has_mailbox`` is the flag as it will be
    encoded, already false when ``directory`` is empty (the decoder forces that).
    """

    __slots__ = (
        "name",
        "password",
        "directory",
        "forwards",
        "personal",
        "hard_quota",
        "soft_quota",
        "message_size_limit",
        "message_count_limit",
        "created",
        "expires",
        "has_mailbox",
        "mailbox_enabled",
    )
    _fields = __slots__
    _defaults = {
        "password": "*",
        "directory": "",
        "forwards": (),
        "personal": "",
        "hard_quota": None,
        "soft_quota": None,
        "message_size_limit": None,
        "message_count_limit": None,
        "created": 0,
        "expires": None,
        "has_mailbox": True,
        "mailbox_enabled": True,
    }
    name: str
    password: str
    directory: str
    forwards: tuple[str, ...]
    personal: str
    hard_quota: int | None
    soft_quota: int | None
    message_size_limit: int | None
    message_count_limit: int | None
    created: int
    expires: int | None
    has_mailbox: bool
    mailbox_enabled: bool

    @property
    def is_alias(self) -> bool:
        """True when delivery only forwards and the entry cannot log in (§1.7)."""
        return not (self.has_mailbox and self.directory)


def vuser_environment(user: VirtualUser) -> dict[str, str]:
    """The ``VUSER_*`` variables (§5.4) checkvpw, authvmailmgr and vdeliver export for a user;
    ``-`` stands for unlimited/never, as VMailMgr's ``utoa`` writes ``UINT_MAX``."""

    def unsigned(value: int | None) -> str:
        return "-" if value is None else str(value)

    return {
        "VUSER_CTIME": str(user.created),
        "VUSER_EXPIRY": unsigned(user.expires),
        "VUSER_MSGCOUNT": unsigned(user.message_count_limit),
        "VUSER_MSGSIZE": unsigned(user.message_size_limit),
        "VUSER_PERSONAL": user.personal,
        "VUSER_HARDQUOTA": unsigned(user.hard_quota),
        "VUSER_SOFTQUOTA": unsigned(user.soft_quota),
        "VUSER_HAS_MAILBOX": "1" if user.has_mailbox else "0",
        "VUSER_MAILBOX_ENABLED": "1" if user.mailbox_enabled else "0",
    }


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


class Domain(Record):
    """A virtual domain: its names, the base user that owns it and that user's table.

    ``users`` keeps table order (VMailMgr lists in creation order). ``maildirs`` is the set of
    user directories (relative to the base user's home, as stored) that exist as maildirs,
    so the planner can tell a missing mailbox from a present one.
    """

    __slots__ = ("name", "base_user", "wildcard", "domain_aliases", "options", "qmail_default", "users", "maildirs")
    _fields = __slots__
    _defaults = {
        "wildcard": False,
        "domain_aliases": (),
        "options": {},
        "qmail_default": None,
        "users": (),
        "maildirs": frozenset(),
    }
    name: str
    base_user: str
    wildcard: bool
    domain_aliases: tuple[str, ...]
    options: Mapping[str, OptionValue]
    qmail_default: str | None
    users: tuple[VirtualUser, ...]
    maildirs: frozenset[str]

    def __hash__(self) -> int:
        return hash((self.name, self.base_user, self.users))

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


class HostState(Record):
    """Everything vmreconcile manages on one host (or wants there).

    ``control`` maps a control file name to its lines (without newlines), or is missing the
    name when the file does not exist. ``options`` are the global ``/etc/vmailmgr`` options.
    """

    __slots__ = ("options", "control", "domains", "format_version")
    _fields = __slots__
    _defaults = {"options": {}, "control": {}, "domains": (), "format_version": FORMAT_VERSION}
    options: Mapping[str, OptionValue]
    control: Mapping[str, tuple[str, ...]]
    domains: tuple[Domain, ...]
    format_version: int

    def __hash__(self) -> int:
        return hash(self.domains)

    def domain(self, name: str) -> Domain | None:
        for domain in self.domains:
            if domain.name == name:
                return domain
        return None


#: Translation tables that lowercase A-Z only, for str and for bytes.
ASCII_LOWER_STR = {c: c + 32 for c in range(65, 91)}
ASCII_LOWER_BYTES = bytes.maketrans(bytes(range(65, 91)), bytes(range(97, 123)))


def ascii_lower(text: str) -> str:
    """Lowercase A-Z only, as VMailMgr's ``mystring::lower`` does in the C locale; every other
    character is kept (``str.lower`` would also fold non-ASCII letters)."""
    return text.lower() if text.isascii() else text.translate(ASCII_LOWER_STR)
