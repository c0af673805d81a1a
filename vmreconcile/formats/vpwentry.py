"""VMailMgr virtual user records ([compat: record-format]): encode v2, decode v2, v1 and old.

The encoder reproduces ``lib/vpwentry/to.cc`` byte for byte; the decoder follows
``from_ver2.cc``/``from_ver1.cc``/``from_old.cc`` and ``strtou``. Anything the C code would
silently treat as "no such user" raises `RecordError` naming the key, so the management side
can say what is wrong and the runtime can refuse cleanly.
"""

from __future__ import annotations

from ..model import ASCII_LOWER_BYTES, UINT_MAX, VirtualUser, from_bytes, to_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

FLAG_HAS_MAILBOX = 10
FLAG_MAILBOX_ENABLED = 8
_FORBIDDEN_NAME_BYTES = frozenset(b"/:\n\r\t ")


class RecordError(ValueError):
    """A record that VMailMgr itself would reject (or could not have written)."""

    def __init__(self, key: bytes | str, reason: str) -> None:
        self.key = key if isinstance(key, str) else from_bytes(key)
        self.reason = reason
        super().__init__(f"virtual user {self.key!r}: {reason}")


def user_key(name: str) -> bytes:
    """The cdb key of a user name: its bytes with only A-Z lowercased (``mystring::lower``)."""
    return to_bytes(name).translate(ASCII_LOWER_BYTES)


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid virtual user name (``validate.cc``), or None if it is."""
    raw = to_bytes(name)
    if not raw:
        return "the name is empty"
    bad = sorted({chr(b) for b in raw if b in _FORBIDDEN_NAME_BYTES})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"the name contains {shown} (not allowed: '/', ':', space, tab, CR, LF)"
    if b"\0" in raw:
        return "the name contains a NUL byte"
    return None


def _number(value: int | None) -> bytes:
    """``utoa``: UINT_MAX (our None) is '-', everything else plain decimal."""
    if value is None or value == UINT_MAX:
        return b"-"
    if not 0 <= value < UINT_MAX:
        raise ValueError(f"{value} does not fit VMailMgr's 32-bit unsigned fields")
    return str(value).encode()


def encode_record(user: VirtualUser) -> bytes:
    """The v2 record of ``user``, exactly as VMailMgr's ``to.cc`` writes it."""
    fields = [user.password, user.directory]
    for text in fields + list(user.forwards) + [user.personal]:
        if "\0" in text:
            raise RecordError(user.name, "a field contains a NUL byte")
    if any(not fwd for fwd in user.forwards):
        raise RecordError(user.name, "an empty forward address cannot be stored")
    has_mailbox = 1 if (user.has_mailbox and user.directory) else 0
    out = [
        bytes((2, FLAG_HAS_MAILBOX, has_mailbox, FLAG_MAILBOX_ENABLED, int(user.mailbox_enabled), 0)),
        to_bytes(user.password),
        b"\0",
        to_bytes(user.directory),
        b"\0",
    ]
    for forward in user.forwards:
        out.append(to_bytes(forward))
        out.append(b"\0")
    out.append(b"\0")
    out.append(to_bytes(user.personal))
    out.append(b"\0")
    for value in (
        user.hard_quota,
        user.soft_quota,
        user.message_size_limit,
        user.message_count_limit,
        user.created,
        user.expires,
    ):
        out.append(_number(value))
        out.append(b"\0")
    return b"".join(out)


def _strtou(key: bytes, raw: bytes, what: str) -> int:
    """``strtou`` as VMailMgr's decoder applies it to a whole field."""
    text = raw.lstrip(b" \t\n\v\f\r")
    if text.startswith(b"-"):
        rest = text[1:]
        digits = len(rest) - len(rest.lstrip(b"0123456789"))
        if digits != len(rest):
            raise RecordError(key, f"{what} {raw!r} is not a number")
        return UINT_MAX
    digits = len(text) - len(text.lstrip(b"0123456789"))
    if digits != len(text):
        raise RecordError(key, f"{what} {raw!r} is not a number")
    return int(text) % (1 << 32) if text else 0


_NUMBER_NAMES = (
    "hard quota",
    "soft quota",
    "message size limit",
    "message count limit",
    "creation time",
    "expiry time",
)


def _field_number(key: bytes, raw: bytes, what: str) -> int:
    """A number field; the common shapes ('-', plain digits) without the general parser."""
    if raw == b"-":
        return UINT_MAX
    if raw.isdigit():
        return int(raw) & 0xFFFFFFFF
    return _strtou(key, raw, what)


def _decode_tail(key: bytes, data: bytes, pos: int, has_mailbox: bool, enabled: bool) -> VirtualUser:
    """The fields after the flags (password to expiry), shared by v1 and v2; ``data`` is known to end in NUL.

    Splitting once at NUL is several times faster than walking field by field, which matters
    when a plan reads 100,000 users.
    """
    fields = data[pos:-1].split(b"\0")
    end = 2
    while end < len(fields) and fields[end]:
        end += 1
    if end >= len(fields):
        raise RecordError(key, "truncated record: the forward list does not end")
    tail = fields[end + 1 :]
    if len(tail) < 7:
        missing = ("the personal info", *_NUMBER_NAMES)[len(tail)]
        raise RecordError(key, f"truncated record: {missing} is missing")
    if len(tail) > 7:
        raise RecordError(key, f"{len(tail) - 7} unexpected fields after the expiry time")
    hq, sq, ms, mc, ctime, expiry = (
        _field_number(key, raw, what) for raw, what in zip(tail[1:], _NUMBER_NAMES, strict=True)
    )
    directory = fields[1]
    # in `USER_FIELDS` order (tests/formats/test_vpwentry.py checks it against the table)
    return VirtualUser.from_values(
        (
            from_bytes(key),
            from_bytes(fields[0]),
            from_bytes(directory),
            has_mailbox and bool(directory),
            enabled,
            tuple(from_bytes(f) for f in fields[2:end]),
            from_bytes(tail[0]),
            None if hq == UINT_MAX else hq,
            None if sq == UINT_MAX else sq,
            None if ms == UINT_MAX else ms,
            None if mc == UINT_MAX else mc,
            ctime,
            None if expiry == UINT_MAX else expiry,
        )
    )


def decode_record(key: bytes, data: bytes, defaults: Mapping[str, int | None] | None = None) -> VirtualUser:
    """Decode one table record; ``key`` becomes the user's name.

    ``defaults`` supplies the four limits and expiry for old-format (``:pass:dest``) records,
    which carry none (keys ``hard_quota``, ``soft_quota``, ``message_size_limit``,
    ``message_count_limit``, ``expires``); without it they are unlimited.
    """
    if not data:
        raise RecordError(key, "empty record")
    version = data[0]
    if version == 2:
        if not data.endswith(b"\0"):
            raise RecordError(key, "truncated record: it does not end in NUL")
        has_mailbox = enabled = True
        pos = 1
        while True:
            if pos >= len(data):
                raise RecordError(key, "truncated record: the flag list does not end")
            flag = data[pos]
            if flag == 0:
                pos += 1
                break
            if pos + 1 >= len(data):
                raise RecordError(key, f"truncated record: flag {flag} has no value")
            value = data[pos + 1] != 0
            if flag == FLAG_HAS_MAILBOX:
                has_mailbox = value
            elif flag == FLAG_MAILBOX_ENABLED:
                enabled = value
            else:
                raise RecordError(key, f"unknown flag number {flag} (VMailMgr hides such a record)")
            pos += 2
        return _decode_tail(key, data, pos, has_mailbox, enabled)
    if version == 1:
        if not data.endswith(b"\0"):
            raise RecordError(key, "truncated record: it does not end in NUL")
        return _decode_tail(key, data, 1, True, True)
    if version == ord(":"):
        return _decode_old(key, data, defaults or {})
    raise RecordError(key, f"unknown record format version 0x{version:02x} (VMailMgr reads 1, 2 and ':')")


def _decode_old(key: bytes, data: bytes, defaults: Mapping[str, int | None]) -> VirtualUser:
    """The pre-0.90 ``:password:destination`` record (``from_old.cc``)."""
    password, sep, destination = data[1:].partition(b":")
    if not sep:
        raise RecordError(key, "old-format record without a destination")
    limits = {
        k: defaults.get(k) for k in ("hard_quota", "soft_quota", "message_size_limit", "message_count_limit", "expires")
    }
    if destination[:1] in (b".", b"/"):
        return VirtualUser(
            name=from_bytes(key),
            password=from_bytes(password),
            directory=from_bytes(destination),
            has_mailbox=True,
            created=0,
            **limits,
        )
    if destination.startswith(b"&"):
        destination = destination[1:]
    forwards = tuple(from_bytes(f) for f in destination.split(b",") if f)
    return VirtualUser(
        name=from_bytes(key),
        password=from_bytes(password),
        directory="",
        forwards=forwards,
        has_mailbox=False,
        created=0,
        **limits,
    )
