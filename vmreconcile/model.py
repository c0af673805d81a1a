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
    from typing import Any, Self

UINT_MAX = 0xFFFFFFFF

#: An option value: the stripped first line for string/dir/unsigned options,
#: a tuple of items for list options (``postmaster-aliases``).
OptionValue = str | tuple[str, ...]

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
    def from_values(cls, values: tuple[Any, ...]) -> Self:
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

    def astuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def asdict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self._fields}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.astuple() == other.astuple()

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self.astuple()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple[type[Self], tuple[Any, ...]]:
        return (type(self), self.astuple())

    def with_changes(self, **changes: object) -> Self:
        """A copy with some fields replaced (the records are immutable)."""
        return type(self)(**{**self.asdict(), **changes})


def to_bytes(text: str) -> bytes:
    """Encode a model string back to the exact bytes it was read from."""
    return text.encode("utf-8", "surrogateescape")


def from_bytes(raw: bytes) -> str:
    """Decode bytes from a table or file without ever failing or losing a byte."""
    return raw.decode("utf-8", "surrogateescape")


class UserField(Record):
    """One field of a virtual user, described once for every layer that handles it.

    ``unit`` names how the value is written and read (``key``, ``hash``, ``text``, ``flag``,
    ``addresses``, ``size``, ``count``, ``time``, ``expiry``); the management side maps a unit
    to its YAML parser, export spelling and schema (``desired/units.py``: `UNITS`), so a field
    needs no code of its own there. ``default`` is the model's value when a record or a
    constructor leaves the field out; ``option`` is the VMailMgr option that gives a *new*
    entry its value instead (``default-hardquota`` ...). ``record`` says where the v2 record
    keeps it ([compat: record-format]): ``key``, ``text N`` / ``forwards N`` / ``number N``
    (item number) or ``flag N`` (flag number). ``yaml_rank`` orders the keys of a YAML entry
    (export writes them in that order; 0: not a YAML key). ``export`` is ``differs`` (export
    writes the field when it differs from a new entry's value, or when that value depends
    on the second the entry is made) or ``alias`` (the same, and always for an alias).
    ``label`` names the field in messages; ``doc`` and ``show_doc`` are its descriptions in
    the configuration schema and in the ``show --format json`` schema.
    """

    __slots__ = ("name", "unit", "default", "option", "record", "yaml_rank", "export", "label", "doc", "show_doc")
    _fields = __slots__
    _defaults = {"option": "", "yaml_rank": 0, "export": "differs", "show_doc": ""}
    name: str
    unit: str
    default: object
    option: str
    record: str
    yaml_rank: int
    export: str
    label: str
    doc: str
    show_doc: str


#: Every field of `VirtualUser`, in the documented order (the model, show JSON, plan diffs).
#: Adding a field: a row here, the codec (``formats/vpwentry.py``) when the record must carry
#: it, and the docs; ``python -m vmreconcile.desired.schemagen`` then regenerates both JSON schemas from this table.
USER_FIELD_TABLE: tuple[UserField, ...] = (
    UserField(
        "name",
        "key",
        None,
        record="key",
        label="name",
        doc="",
        show_doc="Table key: the user name with A-Z lowercased.",
    ),
    UserField(
        "password",
        "hash",
        "*",
        record="text 1",
        yaml_rank=1,
        label="password",
        doc="How the password is given (see $defs/password). Omitted: keep the live hash; a new entry gets * (no login).",
        show_doc="Stored crypt string ('*' = no login); when redacted sha256:<digest of it>, or "
        "unverifiable:null-crypt / unverifiable:old-md5.",
    ),
    UserField(
        "directory",
        "text",
        "",
        record="text 2",
        yaml_rank=3,
        label="directory",
        doc="Exact stored mailbox directory, relative to the base user's home (adoption). Omitted: keep the live "
        "value; a new user gets './' + userdir(name as written), e.g. ./users/Henry:Ford; a new alias './users/NAME'.",
        show_doc="Mailbox directory relative to the base user's home, as stored (may be empty).",
    ),
    UserField(
        "has_mailbox",
        "flag",
        True,
        record="flag 10",
        yaml_rank=4,
        label="has-mailbox flag",
        doc="Whether mail is stored in the directory (VMailMgr's has-mailbox flag). Omitted: keep the live value; "
        "true for a new user, false for a new alias.",
        show_doc="False for aliases (forward only, no login).",
    ),
    UserField(
        "mailbox_enabled",
        "flag",
        True,
        record="flag 8",
        yaml_rank=5,
        label="mailbox-enabled flag",
        doc="false stops maildir delivery but still forwards (it does not block logins). Omitted: keep the live "
        "value; true for new entries.",
        show_doc="False stops maildir delivery; forwards still go out; logins still work.",
    ),
    UserField(
        "forwards",
        "addresses",
        (),
        record="forwards 3",
        yaml_rank=2,
        export="alias",
        label="forwards",
        doc="Where mail is also sent: a full address (user@example.org), a name of this domain (delivered to "
        "name@<domain>), or 'name@' (VMailMgr appends control/me). An empty list clears them. Omitted: keep the "
        "live forwards (none for a new entry).",
        show_doc="Forward addresses; bare names are local, name@ gets control/me.",
    ),
    UserField(
        "personal",
        "text",
        "",
        record="text 4",
        yaml_rank=6,
        label="personal information",
        doc="Free-text personal information (vadduser -p). Omitted: keep the live value; empty for new entries.",
        show_doc="Free-text personal information.",
    ),
    UserField(
        "hard_quota",
        "size",
        None,
        option="default-hardquota",
        record="number 5",
        yaml_rank=7,
        label="hard quota",
        doc="Hard quota in bytes (stored, enforced by vcheckquota, not by vdeliver). Omitted: keep the live value; "
        "default-hardquota for new entries.",
    ),
    UserField(
        "soft_quota",
        "size",
        None,
        option="default-softquota",
        record="number 6",
        yaml_rank=8,
        label="soft quota",
        doc="Soft quota in bytes. Omitted: keep the live value; default-softquota for new entries.",
    ),
    UserField(
        "message_size_limit",
        "size",
        None,
        option="default-msgsize",
        record="number 7",
        yaml_rank=9,
        label="message size limit",
        doc="Largest message in bytes. Omitted: keep the live value; default-msgsize for new entries.",
    ),
    UserField(
        "message_count_limit",
        "count",
        None,
        option="default-msgcount",
        record="number 8",
        yaml_rank=10,
        label="message count limit",
        doc="Most messages in the mailbox. Omitted: keep the live value; default-msgcount for new entries.",
    ),
    UserField(
        "created",
        "time",
        0,
        record="number 9",
        yaml_rank=11,
        label="creation time",
        doc="Creation time as stored (adoption; 0 = unknown). Omitted: keep the live value; now for new entries.",
        show_doc="Creation time, Unix seconds; 0 = unknown.",
    ),
    UserField(
        "expires",
        "expiry",
        None,
        option="default-expiry",
        record="number 10",
        yaml_rank=12,
        label="expiry",
        doc="When the account stops working (deliveries bounce, logins fail), or 'never'. Omitted: keep the live "
        "value; now + default-expiry for new entries.",
        show_doc="Expiry time, Unix seconds; null = never.",
    ),
)

#: Field names of `VirtualUser` in their documented order (show JSON, plan diffs).
USER_FIELDS = tuple(f.name for f in USER_FIELD_TABLE)


class VirtualUser(Record):
    """One entry of a base user's ``passwd.cdb`` ([compat: fields]): a mailbox, an alias or both.

    ``name`` is the table key (ASCII-lowercased). ``has_mailbox`` is the flag as it will be
    encoded, already false when ``directory`` is empty (the decoder forces that). The fields,
    their order and their defaults come from `USER_FIELD_TABLE`.
    """

    __slots__ = USER_FIELDS
    _fields = USER_FIELDS
    _defaults = {f.name: f.default for f in USER_FIELD_TABLE if f.name != "name"}
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
        """True when delivery only forwards and the entry cannot log in ([compat: fields])."""
        return not (self.has_mailbox and self.directory)


def vuser_environment(user: VirtualUser) -> dict[str, str]:
    """The ``VUSER_*`` variables ([compat: fields]) checkvpw, authvmailmgr and vdeliver export for a user;
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
