"""VMailMgr configuration options ([compat: options]): one file per option.

Values are looked up in ``~base/.vmailmgr/<option>``, then ``/etc/vmailmgr/<option>``, then the
built-in default. Parsing is pure (`parse_option`); `ConfigChain` does no I/O itself: it reads
through a function the caller provides (``Host`` passes a safe file reader), so the runtime and
the management side share it.
"""

from __future__ import annotations

import os

from ..model import UINT_MAX, OptionValue, Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    StrPath = str | os.PathLike[str]

STRING, DIR, UNSIGNED, LIST = "string", "dir", "unsigned", "list"


class Option(Record):
    """One VMailMgr option: its file name, how its file is read, and its built-in default."""

    __slots__ = ("name", "kind", "default", "description")
    _fields = __slots__
    name: str
    kind: str
    default: str | int | tuple[str, ...]
    description: str


#: The 22 options of ``lib/config/configrc.in``, in ``showvconfig`` order.
OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option("autoresponse-dir", DIR, "autoresponse/", "autoresponder directory inside a mailbox"),
        Option("autoresponse-file", STRING, "message.txt", "autoresponder message file name"),
        Option("bulletin-dir", DIR, "bulletins/", "unused by VMailMgr itself (vpopbull)"),
        Option("default-expiry", UNSIGNED, UINT_MAX, "seconds from creation until a new user expires"),
        Option("default-maildir", DIR, "Maildir/", "unused by VMailMgr 0.97"),
        Option("default-msgcount", UNSIGNED, UINT_MAX, "message count limit for new users"),
        Option("default-msgsize", UNSIGNED, UINT_MAX, "message size limit for new users"),
        Option("default-hardquota", UNSIGNED, UINT_MAX, "hard quota for new users"),
        Option("default-softquota", UNSIGNED, UINT_MAX, "soft quota for new users"),
        Option("default-username", STRING, "+", "the catch-all user vdeliver falls back to"),
        Option(
            "error-maildir", DIR, "/var/lib/vmailmgr/error-maildir/", "maildir checkvpw uses when a user's is missing"
        ),
        Option("global-bulletin-dir", DIR, "/var/spool/bulletins/", "unused by VMailMgr itself"),
        Option("maildir-arg-str", STRING, "maildir", "checkvpw replaces the argument containing this"),
        Option("password-file", STRING, "passwd", "table name in the base user's home (.cdb is appended)"),
        Option("postmaster-aliases", LIST, ("mailer-daemon", "postmaster", "root"), "aliases vsetup creates"),
        Option("postmaster-email", STRING, "postmaster@", "where the postmaster aliases forward"),
        Option("qmail-root", DIR, "/var/qmail/", "qmail's home"),
        Option("separators", STRING, "@:", "characters that split a login into user and domain"),
        Option("socket-file", STRING, "/tmp/.vmailmgrd", "vmailmgrd socket (daemon not managed)"),
        Option("user-dir", DIR, "users/", "where mailboxes live, relative to the base user's home"),
        Option("user-dir-bits", UNSIGNED, 0, "hash bits per directory slice"),
        Option("user-dir-slices", UNSIGNED, 0, "number of hashed directory levels"),
    )
}

NOT_SET = None

#: vmreconcile's own switches, kept as files beside VMailMgr's options in ``/etc/vmailmgr`` (not
#: VMailMgr options, so not in `OPTIONS`): the users whose password Courier may change
#: (``<base>/<key>`` lines) and whether system accounts may log in (``1``/``yes``).
PASSWD_CHANGEABLE = "vmreconcile-passwd-changeable"
SYSTEM_LOGINS = "vmreconcile-system-logins"


def changeable_entries(raw: bytes) -> tuple[str, ...]:
    """The ``<base>/<key>`` entries of a `PASSWD_CHANGEABLE` file, in file order: surrounding
    space stripped, blank lines and ``#`` comments skipped. The one reading of that file, for
    the authpipe (which may change those passwords) and for plan and export (which manage it)."""
    lines = (line.strip() for line in raw.decode("utf-8", "surrogateescape").split("\n"))
    return tuple(line for line in lines if line and not line.startswith("#"))


def strtou_prefix(text: str) -> int | None:
    """``strtou`` on an option value: leading digits (or '-' = UINT_MAX); None if none used."""
    text = text.lstrip()
    if text.startswith("-"):
        return UINT_MAX
    digits = ""
    for ch in text:
        if not "0" <= ch <= "9":
            break
        digits += ch
    return int(digits) % (1 << 32) if digits else None


def parse_option(kind: str, raw: bytes) -> str | int | tuple[str, ...] | None:
    """The value a file's content gives, or None when the lookup must move on."""
    text = raw.decode("utf-8", "surrogateescape")
    if kind == LIST:
        items = (line.strip() for line in text.split("\n"))
        return tuple(item for item in items if item and not item.startswith("#"))
    first = text.split("\n", 1)[0].strip()
    if not first:
        return NOT_SET
    if kind == DIR:
        return first if first.endswith("/") else first + "/"
    if kind == UNSIGNED:
        return strtou_prefix(first)
    return first


def stored_value(raw: bytes, kind: str) -> OptionValue:
    """How a live option file is held in the model: first line stripped, or list items."""
    text = raw.decode("utf-8", "surrogateescape")
    if kind == LIST:
        return tuple(line.strip() for line in text.split("\n") if line.strip() and not line.strip().startswith("#"))
    return text.split("\n", 1)[0].strip()


def render_option(value: OptionValue) -> bytes:
    """The file content for an option value in the model."""
    if isinstance(value, tuple):
        return "".join(item + "\n" for item in value).encode("utf-8", "surrogateescape")
    return (value + "\n").encode("utf-8", "surrogateescape")


def layered_value(name: str, *layers: Mapping[str, OptionValue]) -> str | int | tuple[str, ...]:
    """An option as VMailMgr reads it from model layers (most specific first), else its default.

    Each layer maps option names to their stored values (`stored_value`), as in a `Domain` or
    `HostState`; a value that does not parse moves on to the next layer.
    """
    option = OPTIONS[name]
    for layer in layers:
        if name in layer:
            parsed = parse_option(option.kind, render_option(layer[name]))
            if parsed is not None:
                return parsed
    return option.default


#: The documented range of each unsigned option that has one. ``userdir()`` takes ``bits`` bits
#: of a 32-bit CRC per slice: wider slices or more of them add nothing but work (a huge value
#: would make every plan build a huge path), so both stop at 32 [compat: userdir].
UNSIGNED_RANGES: dict[str, tuple[int, int]] = {"user-dir-bits": (0, 32), "user-dir-slices": (0, 32)}


def password_file_problem(password_file: str) -> str | None:
    """Why a ``password-file`` value is refused, or None.

    VMailMgr takes it relative to the base user's home [compat: table-files]. The option can be set by the
    base user (``~/.vmailmgr/password-file``) and is read by root (plan, authpipe), so only a
    plain file name is accepted: no ``/`` (no other directory, no symlinked parent, no other
    tenant's table through ``..``) and not ``.``/``..``.
    """
    if not password_file or "/" in password_file or password_file in (".", "..") or "\0" in password_file:
        return f"password-file {password_file!r} must be a plain file name in the base user's home"
    return None


def _control_character(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def option_problem(name: str, value: OptionValue) -> str | None:
    """Why the stored value of option ``name`` is outside its documented type or range, or None.

    ``value`` is what the option's file holds (`stored_value`): the first line, stripped, or
    the list items. The one check for both sides: ``validate`` runs it on the YAML's options
    and plan's preflight on the options in effect on the host (``/etc/vmailmgr`` and each
    tenant's ``~/.vmailmgr``), so a value the YAML may not give is not accepted from a file
    either. Stricter than VMailMgr's parser on purpose: VMailMgr reads ``100 MiB`` as 100 and
    ``abc`` as "not set"; both are refused here rather than guessed. The message does not
    repeat the option's name: callers put it, or the file's path, in front.
    """
    from .vpwentry import name_problem  # here, not at the top: the runtime imports this module

    option = OPTIONS.get(name)
    if option is None or value == "":
        return None  # an empty file means "not set here" [compat: options]
    if option.kind == LIST:
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if _control_character(item):
                return f"{item!r} contains a control character"
            if name == "postmaster-aliases" and name_problem(item):
                return f"{item!r} is not a valid entry name: {name_problem(item)}"
        return None
    if not isinstance(value, str):
        return "a list where one value is expected"
    if _control_character(value):
        return f"{value!r} contains a control character"
    if option.kind == UNSIGNED:
        return _unsigned_problem(name, value)
    if option.kind == DIR:
        return _dir_problem(name, value)
    if name == "password-file":
        return password_file_problem(value)
    if name == "default-username" and name_problem(value):
        return f"{value!r} is not a valid entry name: {name_problem(value)}"
    if name == "separators" and not value:
        return "empty (no character would split a login)"
    return None


def _unsigned_problem(name: str, value: str) -> str | None:
    text = value.strip()
    if text == "-" or (text.startswith("-") and text[1:].isdigit()):
        number = UINT_MAX  # VMailMgr's spelling of "unlimited"
    elif text.isdigit() and text.isascii():
        number = int(text)
    else:
        return f"{value!r} is not a whole number (digits only, or '-' for unlimited)"
    if number > UINT_MAX:
        return f"{text} does not fit 32 bits (at most {UINT_MAX}, or '-' for unlimited)"
    low, high = UNSIGNED_RANGES.get(name, (0, UINT_MAX))
    if not low <= number <= high:
        shown = "'-' (unlimited)" if number == UINT_MAX else str(number)
        return f"{shown} is out of range ({low} to {high})"
    return None


def _dir_problem(name: str, value: str) -> str | None:
    if name == "qmail-root":
        return None if value.startswith("/") else f"{value!r} is not an absolute path"
    if name == "user-dir":
        from .userdir import relative_path_problem

        problem = relative_path_problem(value)
        return f"{value!r} {problem}" if problem else None
    return None


class ConfigChain:
    """Option lookup through directories, most specific first (local, then global).

    Reads each option once and caches it, as VMailMgr's config nodes do.
    """

    def __init__(self, directories: Iterable[StrPath], read: Callable[[str], bytes | None]) -> None:
        self.directories = tuple(directories)
        self._read = read
        self._cache: dict[str, str | int | tuple[str, ...]] = {}

    def get(self, name: str) -> str | int | tuple[str, ...]:
        if name in self._cache:
            return self._cache[name]
        option = OPTIONS[name]
        value = option.default
        for directory in self.directories:
            raw = self._read(os.path.join(directory, name))
            if raw is None:
                continue
            parsed = parse_option(option.kind, raw)
            if parsed is not None:
                value = parsed
                break
        self._cache[name] = value
        return value

    def unsigned(self, name: str) -> int:
        value = self.get(name)
        assert isinstance(value, int)
        return value

    def text(self, name: str) -> str:
        value = self.get(name)
        assert isinstance(value, str)
        return value

    def items(self, name: str) -> tuple[str, ...]:
        value = self.get(name)
        assert isinstance(value, tuple)
        return value
