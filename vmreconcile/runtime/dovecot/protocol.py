"""Dovecot's ``proxy:`` dict protocol as its auth-worker speaks it: lines in, reply lines out.

Pure functions over bytes (no I/O), as measured on Dovecot 2.3.19 (docs/dovecot.md):

* every line ends in LF, fields are separated by TAB, and TAB, LF, CR, NUL and the escape byte
  0x01 itself travel escaped as 0x01 followed by ``t``, ``n``, ``r``, ``0``, ``1``;
* the client sends ``H<major>\\t<minor>\\t<value type>\\t<user>\\t<dict name>`` first (no reply),
  then ``L<key>\\t<user>`` lookups and ``I<flags>\\t<max rows>\\t<path>\\t<user>`` iterations;
* a lookup is answered by exactly one line: ``O<value>`` found, ``N`` not found, ``F<message>``
  failure; an iteration by ``O<key>\\t<value>`` rows and an empty line, or ``F<message>``.

A reply that starts with any other byte crashes Dovecot's auth-worker, so every reply this
server sends is built by one of the functions here and nothing else.
"""

from __future__ import annotations

ESCAPE = 0x01
_ESCAPES = {0x00: b"0", 0x01: b"1", 0x09: b"t", 0x0A: b"n", 0x0D: b"r"}
_UNESCAPES = {ord(code): bytes([raw]) for raw, code in _ESCAPES.items()}
_NEEDS_ESCAPE = bytes(_ESCAPES)

#: The protocol major version Dovecot 2.3 speaks (``H3``); another one is not understood.
MAJOR_VERSION = b"3"

NOT_FOUND = b"N\n"
ITERATION_END = b"\n"


class Malformed(ValueError):
    """A request line this server cannot understand; the message names why (for the log)."""


class Hello:
    __slots__ = ("major", "dict_name")

    def __init__(self, major: bytes, dict_name: str) -> None:
        self.major = major
        self.dict_name = dict_name


class Lookup:
    __slots__ = ("key", "username")

    def __init__(self, key: str, username: str) -> None:
        self.key = key
        self.username = username


class Iterate:
    __slots__ = ("flags", "max_rows", "path", "username")

    def __init__(self, flags: int, max_rows: int, path: str, username: str) -> None:
        self.flags = flags
        self.max_rows = max_rows
        self.path = path
        self.username = username


Request = Hello | Lookup | Iterate


def escape(raw: bytes) -> bytes:
    """``raw`` with TAB, LF, CR, NUL and 0x01 escaped, ready to be one field of a line."""
    if not any(byte in _NEEDS_ESCAPE for byte in raw):
        return raw
    out = bytearray()
    for byte in raw:
        code = _ESCAPES.get(byte)
        if code is None:
            out.append(byte)
        else:
            out.append(ESCAPE)
            out += code
    return bytes(out)


def unescape(field: bytes) -> bytes:
    """The raw bytes of one escaped field; `Malformed` on an escape Dovecot never sends."""
    if ESCAPE not in field:
        return field
    out = bytearray()
    index = 0
    while index < len(field):
        byte = field[index]
        if byte != ESCAPE:
            out.append(byte)
            index += 1
            continue
        if index + 1 >= len(field) or field[index + 1] not in _UNESCAPES:
            raise Malformed("invalid escape sequence")
        out += _UNESCAPES[field[index + 1]]
        index += 2
    return bytes(out)


def _text(field: bytes) -> str:
    return unescape(field).decode("utf-8", "surrogateescape")


def _number(field: bytes, what: str) -> int:
    if not field.isdigit() or len(field) > 18:
        raise Malformed(f"{what} is not a number")
    return int(field)


def parse_request(line: bytes) -> Request:
    """One request line (without its LF); `Malformed` for anything but ``H``, ``L`` and ``I``.

    Fields beyond the ones read are ignored, as a newer minor version may add some.
    """
    if not line:
        raise Malformed("empty line")
    command, fields = line[:1], line[1:].split(b"\t")
    if command == b"H":
        if len(fields) < 2:
            raise Malformed("handshake without a version")
        return Hello(fields[0], _text(fields[4]) if len(fields) > 4 else "")
    if command == b"L":
        return Lookup(_text(fields[0]), _text(fields[1]) if len(fields) > 1 else "")
    if command == b"I":
        if len(fields) < 3:
            raise Malformed("iteration with fewer than 3 fields")
        flags = _number(fields[0], "iteration flags")
        max_rows = _number(fields[1], "iteration row limit")
        return Iterate(flags, max_rows, _text(fields[2]), _text(fields[3]) if len(fields) > 3 else "")
    raise Malformed(f"unsupported command {command!r}")


def found(value: bytes) -> bytes:
    """The reply to a lookup that found ``value``."""
    return b"O" + escape(value) + b"\n"


def failed(message: str) -> bytes:
    """A failure reply; Dovecot logs ``dict-server returned failure: <message>``."""
    return b"F" + escape(message.encode("utf-8", "replace")) + b"\n"


def iteration_row(key: str, value: bytes = b"") -> bytes:
    """One row of an iteration reply: the full key (path included) and its value."""
    return b"O" + escape(key.encode("utf-8", "surrogateescape")) + b"\t" + escape(value) + b"\n"
