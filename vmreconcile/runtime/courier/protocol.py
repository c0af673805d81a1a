"""courier-authlib's authpipe protocol: reading requests, writing replies (see docs/courier.md).

authdaemond keeps one program per worker and talks to it over a pipe, one request at a time:

* ``PRE . SERVICE USER\\n`` - look the account up without a password;
* ``AUTH LEN\\n`` then LEN bytes ``SERVICE\\nTYPE\\nDATA`` (for ``login`` DATA is
  ``USER\\nPASS\\n``);
* ``PASSWD SERVICE\\tUSER\\tOLD\\tNEW\\n`` - answered ``OK\\n`` or ``FAIL\\n``;
* ``ENUMERATE\\n`` - answered with ``NAME\\tUID\\tGID\\tHOME\\tMAILDIR\\tOPTIONS`` lines and ``.\\n``.

An account is ``ATTR=value`` lines ending with ``.\\n``; a refusal is ``FAIL\\n``. The client
stops reading at ``FAIL\\n`` only when those bytes are the whole reply so far, so every reply is
built in memory and handed to the kernel in one ``write()`` (`write_reply`).

Reading is done on the raw fd with a private buffer: AUTH carries an exact byte count, and
buffered text streams would either block past it or decode bytes we must keep. Anything that
leaves the stream unsynchronised (an over-long line, a bad or huge AUTH length, EOF inside AUTH
data) raises `ProtocolError`; the caller then exits without a reply, which authdaemond treats as
a temporary failure and answers by starting a fresh program.
"""

from __future__ import annotations

import errno
import os

from ...model import from_bytes
from ...tables import write_all

#: Longest request line accepted. authdaemond's own buffers are BUFSIZ (8 KiB).
MAX_LINE = 8192
#: Largest AUTH payload accepted (the daemon never sends more than its BUFSIZ buffer).
MAX_AUTH = 8192

FAIL = b"FAIL\n"
OK = b"OK\n"
END = b".\n"


class ProtocolError(Exception):
    """The request stream cannot be resynchronised; answer nothing and exit."""


class _Request:
    """A parsed request: immutable fields, compared by value (no dataclasses: start-up time)."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, *values: str) -> None:
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __hash__(self) -> int:
        return hash((type(self).__name__, *(getattr(self, n) for n in self.__slots__)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Pre(_Request):
    __slots__ = ("service", "user")
    service: str
    user: str


class Auth(_Request):
    """An AUTH request. For ``authtype == "login"``, ``user``/``password`` are filled in."""

    __slots__ = ("service", "authtype", "user", "password")
    service: str
    authtype: str
    user: str
    password: str


class Passwd(_Request):
    __slots__ = ("service", "user", "old", "new")
    service: str
    user: str
    old: str
    new: str


class Enumerate(_Request):
    __slots__ = ()


class Malformed(_Request):
    """A complete line that is no request we know: answered ``FAIL\\n``, the stream stays in step."""

    __slots__ = ("line",)
    line: str


Request = Pre | Auth | Passwd | Enumerate | Malformed


def parse_auth_payload(payload: bytes) -> Auth:
    """``SERVICE\\nTYPE\\nDATA``; for ``login`` DATA's first two lines are user and password."""
    service, _, rest = payload.partition(b"\n")
    authtype, _, data = rest.partition(b"\n")
    user = password = b""
    if authtype == b"login":
        user, _, rest = data.partition(b"\n")
        password = rest.split(b"\n", 1)[0]
    return Auth(from_bytes(service), from_bytes(authtype), from_bytes(user), from_bytes(password))


def parse_line(line: bytes) -> Request | int:
    """A request line without its newline. AUTH returns the payload length still to read."""
    if line.startswith(b"AUTH "):
        digits = line[5:]
        if not digits.isdigit() or len(digits) > 9:
            raise ProtocolError(f"bad AUTH length {digits[:20]!r}")
        length = int(digits)
        if length > MAX_AUTH:
            raise ProtocolError(f"AUTH payload of {length} bytes is larger than {MAX_AUTH}")
        return length
    if line.startswith(b"PRE "):
        parts = line.split(b" ", 3)
        if len(parts) == 4 and parts[3]:
            return Pre(from_bytes(parts[2]), from_bytes(parts[3]))
        return Malformed(from_bytes(line))
    if line.startswith(b"PASSWD "):
        parts = line[7:].split(b"\t")
        if len(parts) == 4:
            return Passwd(*(from_bytes(p) for p in parts))
        return Malformed(from_bytes(line))
    if line == b"ENUMERATE":
        return Enumerate()
    return Malformed(from_bytes(line))


class RequestReader:
    """Requests from a file descriptor, one at a time; `next_request` is None at EOF."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.eof = False

    def _fill(self) -> bool:
        """Read more bytes; False at EOF."""
        if self.eof:
            return False
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:  # pragma: no cover
                    continue
                raise ProtocolError(f"read error: {exc.strerror}") from None
            break
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def _line(self) -> bytes | None:
        start = 0
        while True:
            newline = self.buffer.find(b"\n", start)
            if newline > MAX_LINE:
                raise ProtocolError(f"request line longer than {MAX_LINE} bytes")
            if newline >= 0:
                line = bytes(self.buffer[:newline])
                del self.buffer[: newline + 1]
                return line
            if len(self.buffer) > MAX_LINE:
                raise ProtocolError(f"request line longer than {MAX_LINE} bytes")
            start = len(self.buffer)
            if not self._fill():
                if self.buffer:
                    raise ProtocolError("end of input inside a request line")
                return None

    def _exact(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._fill():
                raise ProtocolError(f"end of input after {len(self.buffer)} of {count} AUTH bytes")
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def next_request(self) -> Request | None:
        line = self._line()
        if line is None:
            return None
        parsed = parse_line(line)
        if isinstance(parsed, int):
            return parse_auth_payload(self._exact(parsed))
        return parsed


def account_reply(attributes: list[tuple[str, str]]) -> bytes:
    """``ATTR=value`` lines and the ending ``.\\n``. Values must not hold a newline."""
    out = []
    for name, value in attributes:
        if "\n" in value or "\0" in value:
            raise ValueError(f"{name} contains a newline or NUL")
        out.append(f"{name}={value}\n")
    out.append(".\n")
    return "".join(out).encode("utf-8", "surrogateescape")


def enumerate_line(name: str, uid: int, gid: int, home: str, maildir: str, options: str = "") -> str | None:
    """One ENUMERATE line; None when a field would break the tab/newline framing."""
    for text in (name, home, maildir, options):
        if "\t" in text or "\n" in text or "\0" in text:
            return None
    return f"{name}\t{uid}\t{gid}\t{home}\t{maildir}\t{options}\n"


def write_reply(fd: int, data: bytes) -> None:
    """Hand ``data`` to the kernel in one ``write()`` (the rest only if the pipe took less)."""
    write_all(fd, data)
