"""Sizes, counts and times as admins write them, and back (pure).

VMailMgr stores every limit and time as a 32-bit unsigned decimal, with ``UINT_MAX`` (``-``)
for "unlimited"/"never" ([compat: record-format]). YAML lets people write ``100 MiB``, ``unlimited``,
``2027-06-30`` or ``never`` instead; this module turns those into the model's ints (``None``
for unlimited/never) and, for ``export``, turns model values back into the most readable
spelling that parses to exactly the same value. Every parser raises `UnitError` with a
message meant for a ``file:line:col:`` diagnostic, never a traceback.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from ..model import UINT_MAX

#: The largest value a limit or time can take; UINT_MAX itself is "unlimited"/"never".
MAX_VALUE = UINT_MAX - 1

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
}
_SIZE = re.compile(r"^\s*([0-9][0-9_]*)(?:\.([0-9]+))?\s*([A-Za-z]*)\s*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ]\s*(\d{1,2}:\d{2}(?::\d{2})?)(?:\.\d+)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
UNLIMITED_WORDS = ("unlimited",)
NEVER_WORDS = ("never",)


class UnitError(ValueError):
    """A value that does not parse; the message says what is accepted."""


def _check_range(value: int, what: str) -> int:
    if value < 0:
        raise UnitError(f"{what} {value} is negative")
    if value > MAX_VALUE:
        raise UnitError(f"{what} {value} does not fit VMailMgr's 32-bit field (at most {MAX_VALUE}, or unlimited)")
    return value


def parse_size(value: object, what: str = "size") -> int | None:
    """Bytes from an integer, ``N KB|MB|GB`` (1000), ``N KiB|MiB|GiB`` (1024) or ``unlimited``."""
    if isinstance(value, bool):
        raise UnitError(f"{what} must be a number of bytes, a size like '100 MiB' or 'unlimited', not {value!r}")
    if isinstance(value, int):
        return _check_range(value, what)
    if not isinstance(value, str):
        raise UnitError(f"{what} must be a number of bytes, a size like '100 MiB' or 'unlimited'")
    if value.strip().lower() in UNLIMITED_WORDS:
        return None
    match = _SIZE.match(value)
    unit = match.group(3).upper() if match else ""
    if not match or unit not in _UNITS:
        raise UnitError(
            f"cannot read {value!r} ({what}): use an integer, KB/MB/GB (1000), KiB/MiB/GiB (1024) or unlimited"
        )
    whole, frac = match.group(1).replace("_", ""), match.group(2) or ""
    factor = _UNITS[unit]
    number = (int(whole + frac) * factor) // (10 ** len(frac))
    if frac and (int(whole + frac) * factor) % (10 ** len(frac)):
        raise UnitError(f"{value!r} is not a whole number of bytes")
    return _check_range(number, what)


def parse_count(value: object, what: str = "count") -> int | None:
    """A plain count (message count limit): a non-negative integer or ``unlimited``."""
    if isinstance(value, str) and value.strip().lower() in UNLIMITED_WORDS:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnitError(f"{what} must be a whole number or unlimited, not {value!r}")
    return _check_range(value, what)


def parse_time(value: object, what: str = "time") -> int:
    """Unix seconds from an epoch integer, an ISO date (midnight UTC) or an ISO datetime.

    A datetime without an offset is taken as UTC: the host's clock zone never matters.
    """
    if isinstance(value, bool):
        raise UnitError(f"{what} must be a date, a datetime or epoch seconds, not {value!r}")
    if isinstance(value, int):
        return _check_range(value, what)
    if isinstance(value, (date, datetime)):
        value = value.isoformat()
    if not isinstance(value, str):
        raise UnitError(f"{what} must be a date (2027-06-30), a datetime (2027-06-30T12:00:00Z) or epoch seconds")
    text = value.strip()
    try:
        if _DATE.match(text):
            moment = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        else:
            match = _DATETIME.match(text)
            if not match:
                raise ValueError(text)
            day, clock, zone = match.groups()
            if clock.count(":") == 1:
                clock += ":00"
            zone = "+00:00" if zone in (None, "Z", "z") else zone
            if len(zone) == 3:
                zone += ":00"
            elif ":" not in zone:
                zone = zone[:3] + ":" + zone[3:]
            moment = datetime.fromisoformat(f"{day}T{clock.zfill(8)}{zone}")
    except ValueError:
        raise UnitError(
            f"cannot read {value!r} ({what}): use a date (2027-06-30), a datetime (2027-06-30T12:00:00Z) "
            "or epoch seconds"
        ) from None
    seconds = int(moment.timestamp())
    if seconds < 0:
        raise UnitError(f"{what} {value!r} is before 1970")
    return _check_range(seconds, what)


def parse_expiry(value: object, what: str = "expiry") -> int | None:
    """Like `parse_time`, plus ``never`` (``None``, stored as ``-``)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in NEVER_WORDS):
        return None
    return parse_time(value, what)


def parse_unsigned_option(value: object, what: str) -> str:
    """An unsigned option value (``default-hardquota`` ...) as its file content (no newline).

    Sizes and ``unlimited`` are accepted; ``-``/``-1`` (VMailMgr's spellings of UINT_MAX) are
    kept verbatim so an exported option reads back as the same file.
    """
    if isinstance(value, str) and re.fullmatch(r"-[0-9]*", value.strip()):
        return value.strip()
    if isinstance(value, str) and value.strip().lower() in UNLIMITED_WORDS + NEVER_WORDS:
        return "-"
    size = parse_size(value, what)
    return "-" if size is None else str(size)


def format_size(value: int | None) -> int | str:
    """The shortest exact spelling of a byte count for export: ``100 MiB``, ``10 MB``, ``1234``."""
    if value is None:
        return "unlimited"
    for unit, factor in (
        ("GiB", 1024**3),
        ("GB", 1000**3),
        ("MiB", 1024**2),
        ("MB", 1000**2),
        ("KiB", 1024),
        ("KB", 1000),
    ):
        if value and value % factor == 0:
            return f"{value // factor} {unit}"
    return value


#: The spelling of each unit as `format_size` writes it (the parser accepts any case).
_UNIT_SPELLINGS = {unit.upper(): unit for unit in ("B", "KB", "MB", "GB", "KiB", "MiB", "GiB")}


def size_spelling(value: object) -> str | None:
    """How a person wrote a size, tidied (``500mib`` -> ``500 MiB``); None for a bare number.

    Plans show a size the way the YAML writes it; this is the YAML's side of that, and
    `parse_size` must already have accepted ``value``.
    """
    if not isinstance(value, str):
        return None
    match = _SIZE.match(value)
    if not match or not match.group(3):
        return None
    number = match.group(1).replace("_", "") + (f".{match.group(2)}" if match.group(2) else "")
    return f"{number} {_UNIT_SPELLINGS.get(match.group(3).upper(), match.group(3))}"


def format_count(value: int | None) -> int | str:
    return "unlimited" if value is None else value


def format_time(value: int) -> str | int:
    """An ISO UTC datetime (``2026-11-24T18:51:56Z``), a date at midnight; 0 ("unknown") stays 0."""
    if value == 0:
        return 0
    moment = datetime.fromtimestamp(value, UTC)
    if value % 86400 == 0:
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_expiry(value: int | None) -> str | int:
    return "never" if value is None else format_time(value)


#: A user field's unit (``model.USER_FIELD_TABLE``) -> its YAML parser ``(value, what)``, for the
#: units that are numbers; the other units (text, flags, addresses, hashes) are read as they are.
PARSERS = {"size": parse_size, "count": parse_count, "time": parse_time, "expiry": parse_expiry}
#: A unit -> the spelling `export` writes (the inverse of `PARSERS`).
FORMATS = {"size": format_size, "count": format_count, "time": format_time, "expiry": format_expiry}
