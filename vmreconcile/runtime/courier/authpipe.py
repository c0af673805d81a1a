"""authpipe: courier-authlib's external authentication program for VMailMgr domains.

authdaemond (``authmodulelist="authpipe"``) starts ``/etc/courier/authProg`` (a symlink to
this program's launcher) once per worker, as root, and keeps it running. Each request is
answered with one ``write()`` (ENUMERATE's long reply: streamed in chunks of whole lines):

* ``PRE . SERVICE USER``: the account without a password check, or ``FAIL``;
* ``AUTH`` (type ``login``): the account if the password is right and the entry may log in
  (not an alias, not expired, a matching hash [compat: checkvpw]), else ``FAIL``. Other types (CRAM-*)
  get ``FAIL``: the tables hold hashes, not the clear text CRAM needs;
* ``PASSWD``: ``OK`` after changing an unmanaged user's password (`courier.passwd`), else
  ``FAIL``;
* ``ENUMERATE``: every user that can log in, as ``user@domain``, then ``.``; streamed, so
  memory does not grow with the tables;
* anything else: ``FAIL``.

Account replies carry ``UID``, ``GID`` (the base user's), ``HOME`` (the base user's home),
``ADDRESS`` (the login name as given), ``NAME`` (the personal field, when set) and
``MAILDIR`` (the stored directory, relative to HOME). Plain system accounts are answered
only when ``/etc/vmailmgr/vmreconcile-system-logins`` enables them (the login core's switch);
otherwise ``FAIL`` lets authdaemond try the next module (e.g. authpam).

Exit status: 0 at end of input; 1 when the request stream is malformed beyond
resynchronising; 111 on a temporary failure (an unreadable table), always without a reply,
which authdaemond reports as a temporary error and answers by starting a new program.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

# Imported up front: the PASSWD child must not import after dropping privileges.
from ...formats import hashing as _hashing  # noqa: F401
from ...host import Host
from ..login.core import Account
from ..process import restore_default_signals
from .directory import Directory, Refused
from .passwd import change_password
from .protocol import (
    END,
    FAIL,
    OK,
    Auth,
    Enumerate,
    Malformed,
    Passwd,
    Pre,
    ProtocolError,
    Request,
    RequestReader,
    account_reply,
    enumerate_line,
    write_reply,
)

EXIT_EOF = 0
EXIT_PROTOCOL = 1
EXIT_TEMPORARY = 111


class Temporary(Exception):
    """Answer nothing and exit 111 (authdaemond: temporary failure, new program next time)."""


def _log(message: str) -> None:
    try:
        sys.stderr.write(f"authpipe: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def account(found: Account, address: str) -> bytes:
    """The ``ATTR=value`` reply for a found account."""
    attributes = [
        ("UID", str(found.base.uid)),
        ("GID", str(found.base.gid)),
        ("HOME", str(found.home)),
        ("ADDRESS", address),
    ]
    if found.user is not None:
        personal = found.user.personal.replace("\n", " ").replace("\0", " ")
        if personal:
            attributes.append(("NAME", personal))
        attributes.append(("MAILDIR", found.user.directory))
    try:
        return account_reply(attributes)
    except ValueError as exc:
        raise Refused(f"cannot describe the account: {exc}") from None


#: Bytes of ENUMERATE lines gathered before they are written (the reply is streamed).
ENUMERATE_CHUNK = 65536


def enumerate_reply(directory: Directory) -> Iterator[bytes]:
    """The ENUMERATE reply in chunks of about `ENUMERATE_CHUNK` bytes, the last ending in ``.``.

    Streamed, not built whole: a table of any size costs one chunk of memory. Split writes are
    safe here (unlike FAIL, see `handle`): the client reads until ``\n.\n``, and every chunk
    ends at a line end.
    """
    lines: list[str] = []
    size = 0
    for address, base, user, home in directory.enumerate():
        line = enumerate_line(address, base.uid, base.gid, str(home), user.directory)
        if line is not None and not line.startswith("#"):
            lines.append(line)
            size += len(line)
            if size >= ENUMERATE_CHUNK:
                yield "".join(lines).encode("utf-8", "surrogateescape")
                lines, size = [], 0
    yield "".join(lines).encode("utf-8", "surrogateescape") + END


def _describe(request: Request) -> str:
    if isinstance(request, Pre):
        return f"PRE {request.service} {request.user!r}"
    if isinstance(request, Auth):
        return f"AUTH {request.service} {request.authtype} {request.user!r}"
    if isinstance(request, Passwd):
        return f"PASSWD {request.service} {request.user!r}"
    return type(request).__name__.upper()


def handle(directory: Directory, request: Request) -> bytes | Iterator[bytes]:
    """The reply to one request, written with one ``write()`` (ENUMERATE's: chunks, written
    as they are produced); raises `Temporary` when there must be none."""
    try:
        if isinstance(request, Pre):
            return account(directory.find(request.user), request.user)
        if isinstance(request, Auth):
            if request.authtype != "login":
                raise Refused(f"authentication type {request.authtype!r} is not supported")
            return account(directory.authenticate(request.user, request.password), request.user)
        if isinstance(request, Passwd):
            change_password(directory, request.user, request.old, request.new)
            _log(f"{_describe(request)}: password changed")
            return OK
        if isinstance(request, Enumerate):
            return enumerate_reply(directory)
        assert isinstance(request, Malformed)
        raise Refused(f"unknown request {request.line[:40]!r}")
    except Refused as refused:
        if refused.temporary:
            raise Temporary(f"{_describe(request)}: {refused.reason}") from None
        if isinstance(request, Passwd) or directory.environ.get("DEBUG_LOGIN", "0") not in ("", "0"):
            _log(f"{_describe(request)}: refused: {refused.reason}")
        return FAIL


def serve(directory: Directory, infd: int = 0, outfd: int = 1) -> int:
    """Answer requests until end of input; return the exit status."""
    reader = RequestReader(infd)
    while True:
        try:
            request = reader.next_request()
        except ProtocolError as exc:
            _log(f"protocol error: {exc}")
            return EXIT_PROTOCOL
        if request is None:
            return EXIT_EOF
        try:
            reply = handle(directory, request)
        except Temporary as exc:
            _log(f"temporary failure: {exc}")
            return EXIT_TEMPORARY
        except Exception as exc:  # a bug must not leave authdaemond waiting 30 s
            _log(f"internal error on {_describe(request)}: {type(exc).__name__}: {exc}")
            return EXIT_TEMPORARY
        try:
            if isinstance(reply, bytes):
                write_reply(outfd, reply)
            else:
                for chunk in reply:
                    write_reply(outfd, chunk)
        except BrokenPipeError:
            return EXIT_EOF
        except Exception as exc:  # mid-ENUMERATE: no end line, so the client sees a failure, not a short list
            _log(f"internal error on {_describe(request)}: {type(exc).__name__}: {exc}")
            return EXIT_TEMPORARY


def main(argv: list[str], host: Host) -> int:
    if os.isatty(0):
        _log("speaks courier-authlib's authpipe protocol on stdin/stdout; run it from authdaemond")
    restore_default_signals()  # Ctrl-C on a foreground authdaemond ends us like a C program, no traceback
    return serve(Directory(host))
