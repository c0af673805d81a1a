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

from ..model import OptionValue


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


@dataclass(frozen=True, slots=True)
class UserSpec:
    """One table entry the YAML names: a user (``kind='user'``) or an alias (``kind='alias'``).

    ``aliases`` (users only) are extra names that forward to this user, made as VMailMgr's
    ``vadduser NAME ALIAS...`` would. Every other field may be `UNSET`.
    """

    name: str
    kind: Literal["user", "alias"] = "user"
    password: PasswordSpec | _Unset = UNSET
    aliases: tuple[str, ...] = ()
    forwards: tuple[str, ...] | _Unset = UNSET
    directory: str | _Unset = UNSET
    has_mailbox: bool | _Unset = UNSET
    mailbox_enabled: bool | _Unset = UNSET
    personal: str | _Unset = UNSET
    hard_quota: int | None | _Unset = UNSET
    soft_quota: int | None | _Unset = UNSET
    message_size_limit: int | None | _Unset = UNSET
    message_count_limit: int | None | _Unset = UNSET
    created: int | _Unset = UNSET
    expires: int | None | _Unset = UNSET
    position: Position | None = None


@dataclass(frozen=True, slots=True)
class DomainSpec:
    """A domain as the YAML describes it.

    ``catch_all`` is the user the ``default-username`` entry forwards to (`UNSET`: leave the
    live entry alone; ``None``: there must be none). ``prune`` deletes live entries the YAML
    does not name (never the postmaster aliases). ``rcpthosts_file`` is where the domain's
    names are listed for qmail-smtpd.
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
