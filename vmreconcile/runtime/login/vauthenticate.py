"""``vauthenticate``: check a virtual user for another program and print its account [compat: courier].

Reads ``domain\\0user\\0password`` (the password needs no terminator) from stdin, at most
511 bytes, authenticates virtual users only, and on success prints::

    UID=<uid>
    GID=<gid>
    USER=<base user>
    HOME=<base home>
    MAILDIR=<stored directory>
    VUSER=<virtual name as typed>

It must run as root: like VMailMgr it drops to the base user before reading the table (with
supplementary groups dropped too). It runs no hooks. The user name is not lowercased.

Exit codes: 0 success; 1 bad login (wrong password, unknown, alias, expired, a system
account); 2 bad data (too long, user or password field missing or empty); 111 temporary.
"""

from __future__ import annotations

import os
import sys

from ...host import Host
from ...tables import write_all
from ..process import restore_default_signals
from .core import (
    EXIT_BAD_INPUT,
    EXIT_LOGIN_FAILED,
    EXIT_OK,
    EXIT_TEMPORARY,
    LoginFailure,
    LoginSession,
    read_login_data,
    undo_locale_coercion,
)

#: The most stdin may carry (VMailMgr's 512-byte buffer keeps one byte free).
MAX_INPUT = 511
MSG_BAD_DATA = "Invalid data"


def parse_request(data: bytes) -> tuple[str, str, str]:
    """``(domain, user, password)``; `LoginFailure` (2) when user or password is missing.

    The password runs to the next NUL or the end of the data; an empty one counts as
    missing, as in VMailMgr.
    """
    parts = data.split(b"\0", 2)
    if len(parts) < 3 or not parts[1]:
        raise LoginFailure(EXIT_BAD_INPUT, MSG_BAD_DATA)
    password = parts[2].split(b"\0", 1)[0]
    if not password:
        raise LoginFailure(EXIT_BAD_INPUT, MSG_BAD_DATA)
    domain, user = parts[0], parts[1]
    decode = lambda raw: raw.decode("utf-8", "surrogateescape")  # noqa: E731
    return decode(domain), decode(user), decode(password)


def main(argv: list[str], host: Host) -> int:
    restore_default_signals()
    undo_locale_coercion(os.environ)
    session = LoginSession(host)
    try:
        domain, user, password = parse_request(read_login_data(0, MAX_INPUT))
        account = session.authenticate(user, password, virtual_only=True, domain=domain)
    except LoginFailure as failure:
        return failure.code
    except Exception as exc:  # a traceback is no answer for the calling program
        sys.stderr.write(f"vauthenticate: internal error: {type(exc).__name__}: {exc}\n")
        return EXIT_TEMPORARY
    base = account.base
    fields = (
        ("UID", str(base.uid)),
        ("GID", str(base.gid)),
        ("USER", base.name),
        ("HOME", account.home),
        ("MAILDIR", account.maildir),
        ("VUSER", account.virtual_name),
    )
    if any("\n" in value or "\0" in value for _, value in fields):
        # one line per field is the whole protocol: a newline in a (base-user controlled) value
        # could forge a UID= or HOME= line for the caller
        sys.stderr.write("vauthenticate: refusing an account whose data contains a newline\n")
        return EXIT_LOGIN_FAILED
    try:
        write_all(1, "".join(f"{name}={value}\n" for name, value in fields).encode("utf-8", "surrogateescape"))
    except OSError as exc:  # the caller went away: no answer was delivered
        sys.stderr.write(f"vauthenticate: cannot write the answer: {exc.strerror}\n")
        return EXIT_TEMPORARY
    return EXIT_OK
