"""How plan values read to people: as the YAML writes them, not as the table stores them.

The plan's changes carry raw model values (``524288000``, ``1796184718``, ``None``), which is
right for JSON and for apply. People wrote ``500 MiB``, ``2027-06-30`` and ``never``, so the
text and markdown outputs spell every value the way the configuration does: sizes in the
unit the YAML used for that very number when it did (`Plan.size_spellings`), else the
largest binary or decimal unit that is exact (``desired.units.format_size``); times as
ISO-8601 UTC; ``unlimited`` and ``never``; lists in YAML's flow style. Strings are shown
plain when that is unambiguous and quoted with every control character escaped otherwise,
so nothing from a table can drive the terminal. Also here: which fields a one-line summary
of a change shows. Pure; used by every human-readable renderer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..desired.units import format_expiry, format_size, format_time
from ..formats.config import OPTIONS, UNSIGNED
from ..model import USER_FIELD_TABLE
from ..printable import printable
from .overview import Entry, NoteLine, PerEntry, common_prefix, own_directory

#: A user field -> its unit (``size``, ``time`` ...), from the one field table.
_USER_UNITS = {f.name: f.unit for f in USER_FIELD_TABLE}
_USER_DEFAULTS = {f.name: f.default for f in USER_FIELD_TABLE}
#: Options whose value is a byte count: the ones that give a new entry a size field.
_SIZE_OPTIONS = frozenset(f.option for f in USER_FIELD_TABLE if f.unit == "size" and f.option)
#: Options whose file holds a number (``-`` for UINT_MAX): shown as the number the YAML writes.
_UNSIGNED_OPTIONS = frozenset(name for name, option in OPTIONS.items() if option.kind == UNSIGNED)

SYMBOL = {"create": "+", "update": "~", "delete": "-"}
#: How each change type is named in a sentence (singular, plural).
TYPE_WORDS = {
    "user": ("user", "users"),
    "alias": ("alias", "aliases"),
    "maildir": ("maildir", "maildirs"),
    "domain": ("domain", "domains"),
    "option": ("option", "options"),
    "control_line": ("control line", "control lines"),
}
#: Change types whose address names them (``option/...``, ``control/...``).
_SELF_NAMED = frozenset({"option", "control_line"})
#: Fields that are the whole of their change: a short line shows the value alone.
_VALUE_ONLY = frozenset({"value", "line"})
#: Fields a short line leaves out of a new entry: the clock's value.
_UNREMARKABLE_ON_CREATE = frozenset({"created"})
_NO_SPELLINGS: Mapping[int, str] = MappingProxyType({})


def number(count: int) -> str:
    """``19,997``: counts with thousands separators."""
    return f"{count:,}"


def totals(add: int, change: int, destroy: int) -> str:
    return f"Plan: {number(add)} to add, {number(change)} to change, {number(destroy)} to destroy."


def quoted(text: str) -> str:
    """A JSON string literal with every character a terminal could act on escaped: C0, DEL, C1,
    separators, and bytes that are not UTF-8 (lone surrogates, which could not even be printed)."""
    out = json.dumps(text, ensure_ascii=False)
    if out.isprintable():
        return out
    return "".join(ch if ch.isprintable() else _json_escape(ch) for ch in out)


def _json_escape(ch: str) -> str:
    """``\\uXXXX`` (a surrogate pair above the BMP): the string stays a valid JSON literal."""
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def plain(text: str) -> str:
    """``text`` as is when that cannot be misread, else `quoted`."""
    if (
        text
        and text == text.strip()
        and text.isprintable()
        and not text.startswith(("'", '"', "[", "{", "<", "#", "&", "*", "!", "|", ">", "%", "@", "`", "-", "+", "?"))
        and ", " not in text
        and ": " not in text
        and " #" not in text
        and text not in ("true", "false", "null", "unlimited", "never", "~")
        and not text.replace(".", "", 1).isdigit()  # a string, not a number
    ):
        return text
    return quoted(text)


def value_text(
    field: str, value: Any, *, option: str | None = None, spellings: Mapping[int, str] = _NO_SPELLINGS
) -> str:
    """One value as the YAML would write it; ``option`` names the option an option value is of."""
    if isinstance(value, PerEntry):
        return per_entry_text(value)
    if option is not None:
        if option in _SIZE_OPTIONS and isinstance(value, str):
            return _option_size_text(value, spellings)
        if option in _UNSIGNED_OPTIONS and isinstance(value, str):
            return _option_number_text(value)
        return _generic(value)
    unit = _USER_UNITS.get(field)
    return _unit_text(unit, value, spellings) if unit else _generic(value)


def per_entry_text(value: PerEntry) -> str:
    if value.field == "password" and value.shape:
        return f"<{value.shape}> (one per entry)"
    return value.shape or "(one per entry)"


def _option_number_text(stored: str) -> str:
    """An unsigned option file's number; ``-`` (or ``-1``: VMailMgr's UINT_MAX) is unlimited."""
    text = stored.strip()
    if text == "-" or (text.startswith("-") and text[1:].isdigit()):
        return "unlimited"
    return text if text.isdigit() else plain(stored)


def _option_size_text(stored: str, spellings: Mapping[int, str]) -> str:
    """An option file's byte count (``104857600``, or ``-`` for unlimited) as a size."""
    text = stored.strip()
    if text.startswith("-"):
        return "unlimited"
    return _size_text(int(text), spellings) if text.isdigit() else plain(stored)


def _unit_text(unit: str, value: Any, spellings: Mapping[int, str]) -> str:
    if unit == "size":
        return _size_text(value, spellings)
    if unit == "count":
        return "unlimited" if value is None else _generic(value)
    if unit == "time" and isinstance(value, int):
        return "0 (unknown)" if value == 0 else str(format_time(value))
    if unit == "expiry" and (value is None or isinstance(value, int)):
        return str(format_expiry(value))
    if unit == "hash" and isinstance(value, str):
        return value if value.startswith("<") else plain(value)
    return _generic(value)


def _size_text(value: object, spellings: Mapping[int, str]) -> str:
    if value is None:
        return "unlimited"
    if not isinstance(value, int) or isinstance(value, bool):
        return _generic(value)
    spelled = spellings.get(value)
    return spelled if spelled is not None else str(format_size(value))


def _generic(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_generic(item) for item in value) + "]"
    if isinstance(value, PerEntry):
        return per_entry_text(value)
    return plain(str(value))


def field_pairs(
    fields: Mapping[str, Any], *, option: str | None = None, spellings: Mapping[int, str] = _NO_SPELLINGS
) -> list[tuple[str, str]]:
    """``(field, value text)`` for every field (a detailed view of a create or delete)."""
    return [(name, value_text(name, value, option=option, spellings=spellings)) for name, value in fields.items()]


def update_pairs(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    option: str | None = None,
    spellings: Mapping[int, str] = _NO_SPELLINGS,
) -> list[tuple[str, str]]:
    """``(field, "old → new")`` for every field an update changes."""
    return [
        (
            name,
            f"{value_text(name, before.get(name), option=option, spellings=spellings)} → "
            f"{value_text(name, value, option=option, spellings=spellings)}",
        )
        for name, value in after.items()
    ]


def entry_pairs(entry: Entry, spellings: Mapping[int, str], detail: bool = False) -> list[tuple[str, str]]:
    """The fields an overview line shows: what an update changes; what makes a new entry differ
    from a bare one (or, ``detail``, every field); nothing but the maildir for a deleted entry."""
    if entry.action == "update":
        pairs = update_pairs(entry.before, entry.after, option=entry.option, spellings=spellings)
    elif entry.action == "create":
        shown = entry.after if detail else {k: v for k, v in entry.after.items() if _remarkable(entry, k, v)}
        pairs = field_pairs(shown, option=entry.option, spellings=spellings)
    elif detail or entry.type in ("option", "control_line"):
        shown = {k: v for k, v in entry.before.items() if not _nothing_shared(v)}
        pairs = field_pairs(shown, option=entry.option, spellings=spellings)
    else:
        pairs = []
    if entry.with_maildir:
        pairs.append(("maildir", "deleted too" if entry.action == "delete" else "created"))
    return pairs


def _nothing_shared(value: Any) -> bool:
    """A group's value that every member has its own of, with nothing in common to show."""
    return isinstance(value, PerEntry) and not value.shape


def _remarkable(entry: Entry, field: str, value: Any) -> bool:
    """Whether a short line names this field of a new entry (a bare new entry has none of them)."""
    if _nothing_shared(value):
        return False
    if entry.type not in ("user", "alias"):
        return True
    if field in _UNREMARKABLE_ON_CREATE:
        return False
    if field == "has_mailbox":
        return value is not (entry.type == "user")
    if field == "directory":
        if isinstance(value, PerEntry) or (isinstance(value, str) and own_directory(value, entry.names[-1])):
            return False
        return bool(value) or entry.type == "user"
    default = _USER_DEFAULTS.get(field)
    return value != default and not (isinstance(value, (list, tuple)) and not value and default == ())


def entry_heading(entry: Entry) -> str:
    """``+ user example.org/me`` or ``+ 19,997 users in example.org (u00003 … u19999)``; names
    from a table are shown `printable` (a live key may hold any byte but ``\\0``)."""
    return printable(_heading(entry))


def _heading(entry: Entry) -> str:
    singular, plural_word = TYPE_WORDS[entry.type]
    symbol = SYMBOL[entry.action]
    if not entry.grouped:
        if entry.type in _SELF_NAMED:  # option/..., control/...: the address says what it is
            return f"{symbol} {entry.addresses[0]}"
        return f"{symbol} {singular} {entry.addresses[0]}"
    names = entry.names
    where = _where(entry)
    return f"{symbol} {number(entry.count)} {plural_word}{where} ({names[0]} … {names[-1]})"


def _where(entry: Entry) -> str:
    if entry.type == "domain":  # the names are the domains
        return ""
    prefix = entry.prefix.rstrip("/")
    if len(entry.domains) == 1 and prefix == entry.domains[0]:
        return f" in {prefix}"
    if len(entry.domains) > 1:
        return f" in {number(len(entry.domains))} domains"
    return f" in {prefix}" if prefix else ""


def pair_text(name: str, value: str) -> str:
    """``hard_quota 500 MiB``; the value alone for a change that is just a value (an option, a line)."""
    return value if name in _VALUE_ONLY else f"{name} {value}"


def pairs_text(pairs: list[tuple[str, str]]) -> str:
    """``password <yescrypt> (one per entry), hard_quota 500 MiB`` (fields joined on one line)."""
    return ", ".join(pair_text(name, value) for name, value in pairs)


def note_text(note: NoteLine) -> str:
    """A note (`printable`), or ``20,000 entries in example.org (u1 … u20000): <what they share>``."""
    return printable(_note(note))


def _note(note: NoteLine) -> str:
    if not note.addresses:
        return note.text
    prefix = common_prefix(note.addresses)
    first, last = note.addresses[0][len(prefix) :], note.addresses[-1][len(prefix) :]
    where = f" in {prefix.rstrip('/')}" if prefix else ""
    return f"{number(len(note.addresses))} entries{where} ({first} … {last}): {note.text}"
