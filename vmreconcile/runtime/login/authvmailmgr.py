"""authvmailmgr: the legacy Courier-IMAP authmod module of VMailMgr [compat: courier].

Courier-IMAP before authdaemond chained authentication modules by exec: the login program
runs ``authvmailmgr NEXT [ARGS...]`` with the request on fd 3 (``SERVICE\\nTYPE\\nDATA``,
for type ``login`` DATA is ``USER\\nPASS\\n``) and its own re-entry point in ``AUTHUSER`` /
``AUTHARGC`` / ``AUTHARGV0..n``. Each module either

* finds ``$AUTHENTICATED`` already set (an earlier module succeeded) and execs NEXT at once;
* succeeds: becomes the base user, sets ``AUTHENTICATED``, ``AUTHADDR``, ``AUTHFULLNAME``,
  ``MAILDIR``, ``USER``, ``HOME``, ``VUSER`` and ``VUSER_*`` and execs NEXT (``execv``: a
  full path);
* passes: the request is not its business (a plain system account), so it puts the request
  on a new fd 3 and execs NEXT;
* fails completely: re-execs ``$AUTHUSER`` with ``$AUTHARGV0..n`` (the login program says
  "NO" and carries on), or writes ``AUTHFAILURE`` to stderr and exits 1 without them.

Hooks ``authvmailmgr-presetuid`` (``/etc/vmailmgr`` only, as root), ``-postsetuid`` (global
then ``~base/.vmailmgr``, as the base user), ``-loginfail`` and ``-error`` (with
``AUTHVMAILMGR_ERROR`` set) run as in checkvpw.

Kept as VMailMgr does it: the password is checked after the setuid (so the failure hooks
run as the base user, through the domain chain), and a failure then re-execs ``$AUTHUSER``
as the base user too; a later LOGIN in that session can only reach the same base user.

Deliberate differences from VMailMgr 0.97 [compat: differences] (also in docs/courier.md):

* each hook runs once (VMailMgr runs pre- and postsetuid twice, the second
  presetuid as the base user through the domain chain), and an authentication type other
  than ``login`` (CRAM-MD5 ...) is passed to the next module instead of failing completely;
* supplementary groups are cleared (login core);
* input longer than BUFSIZ-1 (8191) bytes fails completely instead of being truncated.
"""

from __future__ import annotations

import os
import sys

from ...host import Host
from ..process import reset_signals_before_exec, restore_default_signals

# The login core imports every module of ours a login needs at its top, before any setuid.
from .core import (
    EXIT_LOGIN_FAILED,
    MSG_UNKNOWN_BASE,
    LoginFailure,
    LoginSession,
    NotVirtual,
    read_login_data,
    split_login,
    undo_locale_coercion,
)

#: courier-imap 1.2.2 reads the request into a BUFSIZ buffer.
MAX_REQUEST = 8191
REQUEST_FD = 3
AUTHFAILURE = b"AUTHFAILURE\n"
MSG_BAD_REQUEST = "Invalid authentication request"
MSG_EMPTY = "Empty user name or password"
MSG_POSTSETUID_FAILED = "Execution of postsetuid failed"
MSG_EXEC_FAILED = "Execution of the next module failed"


def _authfailure() -> int:
    try:  # noqa: SIM105 - contextlib costs start-up time on every login
        os.write(2, AUTHFAILURE)
    except OSError:
        pass
    return 1


def reap_children() -> None:
    """Wait for children inherited through exec (the previous module's request writer)."""
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue


def fail_completely() -> int:
    """Re-exec the login program from ``$AUTHUSER``/``$AUTHARGV*``; else AUTHFAILURE, exit 1."""
    env = os.environ
    try:
        count = int(env.get("AUTHARGC", "").strip() or "0")
    except ValueError:
        count = 0
    program = env.get("AUTHUSER")
    args = [env.get(f"AUTHARGV{n}") for n in range(max(count, 0))]
    if count <= 0 or not program or any(a is None for a in args):
        return _authfailure()
    try:
        sys.stderr.flush()
        reset_signals_before_exec()
        os.execv(program, [a for a in args if a is not None])
    except OSError:
        return _authfailure()
    return 1  # pragma: no cover - execv does not return


def exec_next(argv: list[str]) -> int:
    """``execv(argv[1], argv+1)``; returns only on failure."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        reset_signals_before_exec()
        os.execv(argv[1], argv[1:])
    except OSError as exc:
        sys.stderr.write(f"authvmailmgr: cannot execute {argv[1]}: {exc.strerror}\n")
    return 1


def pass_on(argv: list[str], request: bytes) -> int:
    """``authchain``: the original request on a fresh fd 3, then exec the next module.

    The request is at most 8191 bytes, far below a pipe's capacity, so it is written before
    the exec and no writer child is needed.
    """
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, request)
    finally:
        os.close(write_end)
    if read_end != REQUEST_FD:
        os.dup2(read_end, REQUEST_FD)
        os.close(read_end)
    os.set_inheritable(REQUEST_FD, True)
    return exec_next(argv)


def parse_request(request: bytes) -> tuple[str, str, str] | None:
    """``(authtype, user, password)``; user/password are empty unless the type is ``login``."""
    parts = request.split(b"\n", 2)
    if len(parts) < 3:
        return None
    _service, authtype, data = parts
    text = data.decode("utf-8", "surrogateescape")
    user, _, rest = text.partition("\n")
    password = rest.split("\n", 1)[0]
    return authtype.decode("utf-8", "surrogateescape"), user, password


def main(argv: list[str], host: Host) -> int:
    restore_default_signals()
    undo_locale_coercion(os.environ)
    if len(argv) < 2:
        sys.stderr.write("usage: authvmailmgr next-module [args...]\n")
        return _authfailure()
    if os.environ.get("AUTHENTICATED"):
        return exec_next(argv)
    try:
        request = read_login_data(REQUEST_FD, MAX_REQUEST, close=True)
    except LoginFailure:  # unreadable or too long: fails completely, like an empty request
        request = b""
    reap_children()
    if not request:
        return _authfailure()
    session = LoginSession(host, hook_prefix="authvmailmgr", error_variable="AUTHVMAILMGR_ERROR")
    parsed = parse_request(request)
    if parsed is None:
        session.fail(LoginFailure(2, MSG_BAD_REQUEST))
        return fail_completely()
    authtype, user, password = parsed
    if authtype != "login":
        return pass_on(argv, request)
    if not user or not password:
        session.fail(LoginFailure(EXIT_LOGIN_FAILED, MSG_EMPTY))
        return fail_completely()
    if "\0" in user:  # fd 3 is newline-separated; no account name holds a NUL (getpwnam would raise)
        session.fail(LoginFailure(EXIT_LOGIN_FAILED, MSG_UNKNOWN_BASE))
        return fail_completely()
    try:
        user_part = split_login(user, session.config.text("separators"), session.environ)[0]
        account = session.authenticate(user, password, virtual_only=True)
    except NotVirtual:
        return pass_on(argv, request)
    except LoginFailure as failure:
        session.fail(failure)
        return fail_completely()
    except Exception as exc:  # a traceback is no answer: fail like any temporary error
        sys.stderr.write(f"authvmailmgr: internal error: {type(exc).__name__}: {exc}\n")
        session.fail(LoginFailure(111, f"internal error: {type(exc).__name__}"))
        return fail_completely()
    env = session.environ
    if session.run_hook("postsetuid") != 0:
        session.fail(LoginFailure(111, MSG_POSTSETUID_FAILED))
        return fail_completely()
    env["AUTHADDR"] = user_part
    env["AUTHFULLNAME"] = ""
    env["MAILDIR"] = account.maildir
    env["AUTHENTICATED"] = user_part
    exec_next(argv)
    session.fail(LoginFailure(111, MSG_EXEC_FAILED))
    return fail_completely()
