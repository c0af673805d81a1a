"""``checkvpw prog [args...]``: the checkpassword program for virtual users [compat: checkvpw].

Called as root by qmail-popup, Dovecot's checkpassword passdb or anything else that speaks
DJB's checkpassword interface: the login name, password and timestamp arrive on fd 3 as
NUL-terminated strings. On success it becomes the base user, rewrites the maildir argument
and runs ``prog`` as a child (so ``checkvpw-postexec`` can run afterwards), exiting 0 when
the child does.

Exit codes: 0 child ran and exited 0; 1 login failure; 2 bad usage or bad input; 111
temporary error, hook failure or child failure. Fixes over VMailMgr: see
docs/login-runtime.md (supplementary groups dropped, fd-3 data NUL-padded instead of reading
uninitialised memory, system-account logins off by default, the postsetuid message).
"""

from __future__ import annotations

import os
import sys

from ...host import Host
from ...model import ASCII_LOWER_BYTES
from ..process import restore_default_signals, spawn_wait
from .core import (
    EXIT_BAD_INPUT,
    EXIT_LOGIN_FAILED,
    EXIT_OK,
    EXIT_TEMPORARY,
    MSG_UNKNOWN_BASE,
    Account,
    LoginFailure,
    LoginSession,
    read_login_data,
    undo_locale_coercion,
)

#: The most fd 3 may carry (VMailMgr's 513-byte buffer minus one).
MAX_INPUT = 512
INPUT_FD = 3

MSG_NO_PROGRAM = "No subprogram given to execute"
MSG_POSTSETUID_FAILED = "Execution of postsetuid failed"
MSG_CHILD_FAILED = "Execution of command line arguments failed"


def parse_input(data: bytes) -> tuple[str, str]:
    """Login name (ASCII-lowercased) and password from checkpassword data.

    As if the data were NUL-padded to 513 bytes: the password and timestamp terminators
    may be missing, but the name must be terminated; an unterminated name is a login
    failure (what VMailMgr was observed to give), never a read past the data.
    """
    end = data.find(b"\0")
    if end < 0:
        raise LoginFailure(EXIT_LOGIN_FAILED, MSG_UNKNOWN_BASE)
    name = data[:end].translate(ASCII_LOWER_BYTES)
    password = data[end + 1 :].split(b"\0", 1)[0]
    return name.decode("utf-8", "surrogateescape"), password.decode("utf-8", "surrogateescape")


def maildir_argument(args: list[str], needle: str) -> int:
    """Index (in ``args`` = argv[1:]) of the argument to replace by the maildir.

    The first one containing ``needle`` case-insensitively, the program itself included;
    otherwise the last one.
    """
    lowered = needle.lower()
    for index, arg in enumerate(args):
        if lowered in arg.lower():
            return index
    return len(args) - 1


def choose_maildir(session: LoginSession, account: Account, original: str) -> str:
    """The stored directory (or for a system login the argument text), else error-maildir."""
    maildir = account.maildir if account.is_virtual else original
    if not os.path.isdir(maildir):
        error_dir = session.config.text("error-maildir")
        maildir = session.host.fspath(error_dir) if error_dir.startswith("/") else error_dir
        if error_dir.endswith("/") and not maildir.endswith("/"):
            maildir += "/"
    return maildir


def login(argv: list[str], session: LoginSession) -> int:
    """A whole login, from reading fd 3 to running the child; raises `LoginFailure` on any failure."""
    if len(argv) <= 1:
        raise LoginFailure(EXIT_BAD_INPUT, MSG_NO_PROGRAM)
    name, password = parse_input(read_login_data(INPUT_FD, MAX_INPUT, close=True))
    account = session.authenticate(name, password)
    environ = session.environ
    if account.is_virtual:
        environ["MAILDIR"] = account.maildir
    if session.run_hook("postsetuid") != 0:
        raise LoginFailure(EXIT_TEMPORARY, MSG_POSTSETUID_FAILED)
    args = list(argv[1:])
    index = maildir_argument(args, session.config.text("maildir-arg-str"))
    maildir = choose_maildir(session, account, args[index])
    environ["MAILDIR"] = maildir
    args[index] = maildir
    if spawn_wait(args, environ, search=True) != 0:
        raise LoginFailure(EXIT_TEMPORARY, MSG_CHILD_FAILED)
    session.run_hook("postexec")
    return EXIT_OK


def main(argv: list[str], host: Host) -> int:
    restore_default_signals()
    undo_locale_coercion(os.environ)
    session = LoginSession(host, hook_prefix="checkvpw", error_variable="CHECKVPW_ERROR")
    try:
        return login(argv, session)
    except LoginFailure as failure:
        return session.fail(failure)
    except Exception as exc:  # never a traceback towards the client; the caller retries
        sys.stderr.write(f"checkvpw: internal error: {type(exc).__name__}: {exc}\n")
        return session.fail(LoginFailure(EXIT_TEMPORARY, "Internal error"))
