"""What the YAML asks for, before it meets the live system.

The YAML may leave fields out ("keep the live value, or VMailMgr's default for a new entry") and
names passwords indirectly (``{env:}``, ``{file:}``, ``unmanaged``), so it cannot be a
`HostState` yet. The loader turns YAML into this `Spec`; ``plan.resolve`` then completes it
against the live state (pure, given the live model, the clock and a secret reader) into the
desired `HostState`, and the planner diffs two `HostState`s.

`UNSET` marks an omitted field; ``None`` keeps its model meaning (unlimited / never).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..model import USER_FIELD_TABLE, OptionValue


class _Unset:
    """The type of `UNSET`: a field the YAML did not mention."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET = _Unset()


@dataclass(frozen=True, slots=True)
class Position:
    """Where something was written: for ``file:line:col: message`` errors."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


PasswordKind = Literal["hash", "env", "file", "unmanaged", "none"]


@dataclass(frozen=True, slots=True)
class PasswordSpec:
    """How a user's password is given.

    - ``hash``: ``value`` is a crypt string, stored as is (also ``*``/``!...``);
    - ``env`` / ``file``: ``value`` names the secret; resolved only at plan time, verified
      against the live hash and re-hashed only when it does not match;
    - ``unmanaged``: apply never touches the live hash (new users get ``*``);
    - ``none``: no login (``*``).
    """

    kind: PasswordKind
    value: str | None = None


#: The user fields a YAML entry may give (``model.USER_FIELD_TABLE`` rows with a YAML key), in YAML order.
YAML_USER_FIELDS = tuple(
    f.name for f in sorted((f for f in USER_FIELD_TABLE if f.yaml_rank), key=lambda f: f.yaml_rank)
)
_YAML_USER_FIELD_SET = frozenset(YAML_USER_FIELDS)


class UserSpec:
    """One table entry the YAML names: a user (``kind='user'``) or an alias (``kind='alias'``).

    ``aliases`` (users only) are extra names that forward to this user, made as VMailMgr's
    ``vadduser NAME ALIAS...`` would. The entry's fields (`YAML_USER_FIELDS`, from the field
    table) are keyword arguments; ``given`` holds only those the YAML wrote, and reading any
    other one as an attribute gives `UNSET`. ``password`` is a `PasswordSpec`, the other
    fields model values (``forwards`` a tuple, limits ints or ``None``).
    """

    __slots__ = ("name", "kind", "aliases", "position", "given")
    name: str
    kind: Literal["user", "alias"]
    aliases: tuple[str, ...]
    position: Position | None
    given: Mapping[str, object]

    def __init__(
        self,
        name: str,
        kind: Literal["user", "alias"] = "user",
        *,
        aliases: tuple[str, ...] = (),
        position: Position | None = None,
        **given: object,
    ) -> None:
        if not given.keys() <= _YAML_USER_FIELD_SET:
            unknown = sorted(set(given) - _YAML_USER_FIELD_SET)
            raise TypeError(f"UserSpec got unknown fields {unknown}")
        set_ = object.__setattr__
        set_(self, "name", name)
        set_(self, "kind", kind)
        set_(self, "aliases", aliases)
        set_(self, "position", position)
        set_(self, "given", {k: v for k, v in given.items() if v is not UNSET})

    def __getattr__(self, name: str) -> object:
        if name in _YAML_USER_FIELD_SET:
            return self.given.get(name, UNSET)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("UserSpec is immutable; use with_changes()")

    def with_changes(self, **changes: object) -> UserSpec:
        """A copy with some fields (or ``name``/``kind``/``aliases``/``position``) replaced."""
        head: dict[str, object] = {
            "name": self.name,
            "kind": self.kind,
            "aliases": self.aliases,
            "position": self.position,
        }
        given = dict(self.given)
        for key, value in changes.items():
            if key in head:
                head[key] = value
            else:
                given[key] = value
        return UserSpec(**head, **given)  # type: ignore[arg-type]

    def _key(self) -> tuple[object, ...]:
        return (self.name, self.kind, self.aliases, self.position, tuple(sorted(self.given.items())))

    def __eq__(self, other: object) -> bool:
        return self._key() == other._key() if isinstance(other, UserSpec) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        given = "".join(f", {k}={v!r}" for k, v in self.given.items())
        return f"UserSpec(name={self.name!r}, kind={self.kind!r}, aliases={self.aliases!r}{given})"


@dataclass(frozen=True, slots=True)
class DomainSpec:
    """A domain as the YAML describes it.

    ``catch_all`` is the user the ``default-username`` entry forwards to (`UNSET`: leave the
    live entry alone; ``None``: there must be none). ``prune`` deletes live entries the YAML
    does not name (never the postmaster aliases). ``rcpthosts_file`` is where the domain's
    names are listed for qmail-smtpd. ``system_account`` lets the base user be a system
    account (uid below ``UID_MIN``), which plan refuses otherwise.
    """

    name: str
    base_user: str
    wildcard: bool = False
    domain_aliases: tuple[str, ...] = ()
    options: Mapping[str, OptionValue] = field(default_factory=dict)
    prune: bool = False
    catch_all: str | None | _Unset = UNSET
    users: tuple[UserSpec, ...] = ()
    rcpthosts_file: Literal["rcpthosts", "morercpthosts"] = "rcpthosts"
    position: Position | None = None
    system_account: bool = False


#: History entries kept when the YAML does not say (``history: {keep: N}``).
HISTORY_KEEP_DEFAULT = 50
#: The most ``history.keep`` may be (the schema's maximum, from here): each entry keeps whole
#: copies of the files an apply replaced, so a YAML cannot make root keep an unbounded number
#: of them on /var. history/ bounds the bytes as well.
HISTORY_KEEP_MAX = 1000


@dataclass(frozen=True, slots=True)
class Spec:
    """The whole desired configuration of one host."""

    domains: tuple[DomainSpec, ...] = ()
    options: Mapping[str, OptionValue] = field(default_factory=dict)
    qmail_root: str = "/var/qmail"
    reload_command: str | None = None
    bindir: str = "/usr/local/bin"
    password_scheme: str = "yescrypt"
    sources: tuple[str, ...] = ()
    history_keep: int = HISTORY_KEEP_DEFAULT  # history entries kept (``history: {keep: N}``)
    #: byte count -> the YAML's spelling of it (``500 MiB``): plans show sizes as they were written
    size_spellings: Mapping[int, str] = field(default_factory=dict, compare=False)
    #: domain name -> a digest of its YAML and of everything else its check depended on, when
    #: the configuration cache computed one (`desired.incremental`): plan's resolution memo
    #: (`cache.resolved`) knows by it that a domain's spec is the one it planned before
    digests: Mapping[str, bytes] = field(default_factory=dict, compare=False)
