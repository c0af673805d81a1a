"""``vauthd``: Dovecot's dict passdb and userdb, served from VMailMgr tables by one process.

Usage::

    vauthd [--socket PATH [--socket-owner USER[:GROUP]] [--socket-mode MODE]]
           [--max-connections N] [--idle-timeout SECONDS] [--verbose]

With ``--socket`` it creates the UNIX socket itself (mode 0600 unless told otherwise, created
under a temporary name with that mode and renamed into place, so no client ever sees it with
other permissions; a stale socket is replaced, a live one or any other file is not; its
directory and every one above it must be owned by root or vauthd's user and writable by no
one else, sticky or not, and the owner is set without following symlinks). Without
it, it expects the one socket systemd passes (``LISTEN_FDS``/``LISTEN_PID``, see
examples/systemd/vauthd.socket). It speaks Dovecot's ``proxy:`` dict protocol on it: see
`answers` for what it answers and docs/dovecot.md for the Dovecot side.

Everything vauthd reads is read per request, re-read when it changed: a password set by
``vmreconcile apply``, ``vpasswd`` or Courier counts from the next lookup on. SIGHUP drops every
cached file anyway; SIGTERM and SIGINT stop it after the requests in progress (at most 2 s).

Exit status: 0 stopped by a signal; 2 bad usage; 111 no socket to serve (cannot create it,
another vauthd holds it, or systemd passed none or something else). Log lines go to stderr
(the journal under systemd); they never contain a password or a hash.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import sys
from collections.abc import Iterator, MutableMapping

from ...host import Host, untrusted_directory
from .answers import Answers
from .protocol import MAJOR_VERSION, Hello, Lookup, Malformed, failed, parse_request
from .server import Handler, Limits, Server
from .tablecache import CopiedTables

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_NO_SOCKET = 111

#: The first fd systemd passes (sd_listen_fds(3)).
LISTEN_FDS_START = 3

USAGE = (
    "usage: vauthd [--socket PATH [--socket-owner USER[:GROUP]] [--socket-mode MODE]]\n"
    "              [--max-connections N] [--idle-timeout SECONDS] [--verbose]\n"
    "Serves Dovecot's dict passdb/userdb from VMailMgr tables (docs/dovecot.md).\n"
    "Without --socket it serves the socket systemd passes (socket activation)."
)


class SetupError(Exception):
    """vauthd cannot start; the message is the one line it prints."""

    def __init__(self, message: str, code: int = EXIT_NO_SOCKET) -> None:
        super().__init__(message)
        self.code = code


def log(message: str) -> None:
    try:
        sys.stderr.write(f"vauthd: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# ------------------------------------------------------------------------------ arguments


class Options:
    __slots__ = ("socket", "owner", "mode", "limits", "verbose")

    def __init__(self) -> None:
        self.socket: str | None = None
        self.owner: tuple[int, int] | None = None
        self.mode = 0o600
        self.limits = Limits()
        self.verbose = False


def _owner(text: str) -> tuple[int, int]:
    import grp
    import pwd

    user, _, group = text.partition(":")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise SetupError(f"--socket-owner: no user {user!r}", EXIT_USAGE) from None
    if not group:
        return entry.pw_uid, entry.pw_gid
    try:
        return entry.pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        raise SetupError(f"--socket-owner: no group {group!r}", EXIT_USAGE) from None


def _number(option: str, text: str, kind: type = int, base: int = 10) -> int | float:
    try:
        value = int(text, base) if kind is int else float(text)
    except ValueError:
        raise SetupError(f"{option}: {text!r} is not a number", EXIT_USAGE) from None
    if value <= 0:
        raise SetupError(f"{option}: must be more than 0", EXIT_USAGE)
    return value


def parse_arguments(args: list[str]) -> Options:
    """The options after the program name; `SetupError` (exit 2) on anything else."""
    options = Options()
    index = 0
    while index < len(args):
        arg = args[index]
        name, eq, inline = arg.partition("=")
        if name == "--verbose" and not eq:
            options.verbose = True
            index += 1
            continue
        if name in ("-h", "--help"):
            raise SetupError(USAGE, EXIT_USAGE)
        if name not in ("--socket", "--socket-owner", "--socket-mode", "--max-connections", "--idle-timeout"):
            raise SetupError(f"unknown argument {arg!r}\n{USAGE}", EXIT_USAGE)
        if eq:
            value = inline
            index += 1
        elif index + 1 < len(args):
            value = args[index + 1]
            index += 2
        else:
            raise SetupError(f"{name} needs a value", EXIT_USAGE)
        if name == "--socket":
            if not value:
                raise SetupError("--socket needs a path", EXIT_USAGE)
            options.socket = value
        elif name == "--socket-owner":
            options.owner = _owner(value)
        elif name == "--socket-mode":
            mode = int(_number(name, value, int, 8))
            if mode & ~0o777:
                raise SetupError("--socket-mode: permission bits only (for example 0600)", EXIT_USAGE)
            options.mode = mode
        elif name == "--max-connections":
            options.limits.max_connections = int(_number(name, value))
        else:
            options.limits.idle_timeout = float(_number(name, value, float))
    if options.socket is None and (options.owner is not None or options.mode != 0o600):
        raise SetupError("--socket-owner and --socket-mode go with --socket", EXIT_USAGE)
    return options


# ------------------------------------------------------------------------------ sockets


def activated_socket(environ: MutableMapping[str, str]) -> socket.socket | None:
    """The listening socket systemd passed, or None when none was passed to this process.

    Exactly one UNIX stream socket in listening state is accepted; the variables are removed
    so they are not passed on.
    """
    if environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = environ.get("LISTEN_FDS", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    if count != "1":
        raise SetupError(f"systemd passed {count or 'no'} sockets; vauthd serves exactly one (Accept=no)")
    try:
        sock = socket.socket(fileno=LISTEN_FDS_START)
    except OSError as exc:
        raise SetupError(f"fd {LISTEN_FDS_START} from systemd is not a socket: {exc.strerror}") from None
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise SetupError("the socket from systemd must be a UNIX stream socket (ListenStream=/path)")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise SetupError("the socket from systemd is not listening (Accept=no is required)")
    sock.set_inheritable(False)
    return sock


def _probe(path: str) -> bool:
    """True when something accepts connections on the socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def check_socket_directory(directory: str) -> None:
    """Refuse a socket directory someone else could rearrange (`SetupError`).

    Dovecot connects to whatever answers at the socket's path and believes its passdb answers.
    Were the directory writable by another user (sticky or not: ``/tmp`` is no place for it),
    that user could bind the name while vauthd is down, or swap the file between our bind and
    chown, and let anyone log in as anyone. So the directory and every directory above it up
    to ``/`` must be owned by root or by the user vauthd runs as and writable by nobody else;
    a symbolic link on the way is followed only after the directory holding it passed
    (`host.untrusted_directory`, the walk preflight uses too, here with no sticky exception).
    """
    path = os.path.join(os.getcwd(), directory)  # the walk starts at /; ".." is resolved as the kernel would
    try:
        info = os.stat(path)
    except OSError as exc:
        raise SetupError(f"socket directory {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise SetupError(f"socket directory {directory}: not a directory")
    problem = untrusted_directory(path, {0, os.geteuid()}, sticky_entries=False)
    if problem is not None:
        raise SetupError(
            f"socket directory {directory}: {problem}; it and every directory above it must be owned by "
            "root or vauthd's user and writable by no one else, or others could answer in vauthd's place"
        )


def create_socket(path: str, owner: tuple[int, int] | None, mode: int) -> socket.socket:
    """A listening socket at ``path`` with ``owner`` and ``mode`` from its first moment on.

    Nothing is done to the file by a path that could follow a symlink: the mode comes from the
    umask the socket is bound under (Linux has no lchmod), the owner from ``lchown``, and the
    directory must pass `check_socket_directory` first.
    """
    directory, name = os.path.split(path)
    check_socket_directory(directory or ".")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise SetupError(f"{path}: {exc.strerror}") from None
    if info is not None:
        if not stat.S_ISSOCK(info.st_mode):
            raise SetupError(f"{path} exists and is not a socket; not replacing it")
        if _probe(path):
            raise SetupError(f"{path}: another server is listening on it")
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        previous = os.umask(0o777 & ~mode)  # bind creates the socket file with exactly ``mode``
        try:
            sock.bind(temporary)
        finally:
            os.umask(previous)
        if owner is not None:
            os.chown(temporary, *owner, follow_symlinks=False)
        sock.listen(128)
        os.rename(temporary, path)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise SetupError(f"cannot create the socket {path}: {exc.strerror or exc}") from None
    return sock


def socket_identity(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of the socket file at ``path`` (None: gone or not a socket)."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISSOCK(info.st_mode) else None


def remove_socket(path: str, identity: tuple[int, int] | None) -> None:
    """Remove the socket file we created, unless another vauthd has replaced it since."""
    if identity is not None and socket_identity(path) == identity:
        with contextlib.suppress(OSError):
            os.unlink(path)


# ------------------------------------------------------------------------------ requests


def make_handler(answers: Answers) -> Handler:
    """Request line -> reply, as `server.Server` wants it (see there)."""

    def handle(line: bytes) -> bytes | Iterator[bytes] | None:
        try:
            request = parse_request(line)
        except Malformed as exc:
            log(f"malformed request ({exc}): {line[:60]!r}")
            return failed("malformed request") if line[:1] in (b"L", b"I") else None
        if isinstance(request, Hello):
            if request.major != MAJOR_VERSION:
                log(f"closing a connection: dict protocol version {request.major!r}, vauthd speaks 3")
                return None
            return b""
        if isinstance(request, Lookup):
            return answers.lookup(request.key)
        return answers.iterate(request)

    return handle


# ------------------------------------------------------------------------------ main


def serve(listener: socket.socket, host: Host, options: Options) -> None:
    directory = CopiedTables(host)
    answers = Answers(directory, log, verbose=options.verbose)
    server = Server(listener, make_handler(answers), options.limits, log)
    reload_requested = []

    def on_signal(signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            reload_requested.append(signum)
        else:
            server.stop()

    def on_wake() -> None:
        if reload_requested:
            reload_requested.clear()
            directory.forget_all()
            log("SIGHUP: cached tables and files dropped")

    server.on_wake = on_wake
    signal.set_wakeup_fd(server.wake_fd, warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        server.serve()
    finally:
        signal.set_wakeup_fd(-1)  # the server has closed that fd


def main(argv: list[str], host: Host) -> int:
    created = created_identity = None
    try:
        options = parse_arguments(argv[1:])
        listener = activated_socket(os.environ)
        if listener is not None and options.socket is not None:
            raise SetupError("--socket given, but systemd passed a socket too; use one or the other", EXIT_USAGE)
        if listener is None:
            if options.socket is None:
                raise SetupError(f"no socket: give --socket PATH or start it from vauthd.socket\n{USAGE}", EXIT_USAGE)
            listener = created = create_socket(options.socket, options.owner, options.mode)
            created_identity = socket_identity(options.socket)
    except SetupError as exc:
        log(str(exc))
        return exc.code
    where = options.socket if created is not None else "the socket from systemd"
    log(f"serving {where} (at most {options.limits.max_connections} connections)")
    try:
        serve(listener, host, options)
    finally:
        if created is not None and options.socket is not None:
            remove_socket(options.socket, created_identity)
        listener.close()
    log("stopped")
    return EXIT_OK
