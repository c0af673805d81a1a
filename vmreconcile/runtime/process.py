"""Child processes of the runtime: VMailMgr's executable hooks and the programs we start.

One hook runner for every program ([compat: hooks]): for each directory of the active chain,
global (``/etc/vmailmgr``) first, ``<dir>/<name>`` runs if ``stat`` finds it with any execute
bit set, with no arguments, the given environment and our cwd and fds. A skipped hook counts
as 0; the first non-zero result stops the chain and is returned; a directory named twice in a
row runs once. A child killed by a signal gives -1, one whose exec fails (missing, not
executable, not a program) 127, as VMailMgr's forked child reports it.

Where the callers differ, they say so with a parameter, so each keeps what it always did:
``cannot_start`` is the result when no process could be started at all (VMailMgr's failed
fork is -1, which the login programs keep; vdeliver has always reported 127), and
``skip_directories`` leaves out a directory that carries execute bits (vdeliver) instead of
failing to exec it (127, the login programs, as VMailMgr).

Children are started with ``posix_spawn`` (no ``subprocess``: every login and delivery is a
fresh process), with SIGPIPE and SIGXFSZ back at their defaults: Python ignores both, and an
exec would keep them ignored. Signal numbers come from the built-in ``_signal``: ``signal``
imports ``enum`` (~4 ms per process).
"""

from __future__ import annotations

import errno
import os
import stat
import sys

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: importing typing costs ~2 ms per process
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: The exec failed: what VMailMgr's forked child exits with.
EXEC_FAILED = 127
#: Killed by a signal, or (for the login programs) not started at all.
NO_STATUS = -1
#: errno values that mean "this file cannot be executed", as opposed to "no process".
_EXEC_ERRNOS = frozenset((errno.ENOENT, errno.ENOEXEC, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR))


def child_default_signals() -> tuple[int, ...]:
    """SIGPIPE and SIGXFSZ: ignored by Python, to be reset to their defaults in every child."""
    try:
        from _signal import SIGPIPE, SIGXFSZ
    except ImportError:  # pragma: no cover - CPython always has _signal
        from signal import SIGPIPE, SIGXFSZ
    return (SIGPIPE, SIGXFSZ)


def reset_signals_before_exec() -> None:
    """SIGPIPE and SIGXFSZ back at their defaults in this process, which is about to ``exec``
    another program in its place (authvmailmgr's chain): an exec keeps "ignored"."""
    try:
        from _signal import SIG_DFL, signal
    except ImportError:  # pragma: no cover - CPython always has _signal
        from signal import SIG_DFL, signal
    for number in child_default_signals():
        signal(number, SIG_DFL)


def restore_default_signals() -> None:
    """Let SIGINT act as it does for a C program (end the process, no Python traceback).

    Python turns SIGINT into KeyboardInterrupt, which would print a traceback from wherever
    the program happens to be (typically waiting for a child).
    """
    try:
        from _signal import SIG_DFL, SIGINT, signal
    except ImportError:  # pragma: no cover - CPython always has _signal
        from signal import SIG_DFL, SIGINT, signal
    signal(SIGINT, SIG_DFL)


def _flush_standard_streams() -> None:
    """Our buffered output goes out before the child's, in the order it was written."""
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib would cost an import per process
            stream.flush()
        except (OSError, ValueError):
            pass


def spawn_wait(argv: list[str], environ: Mapping[str, str], search: bool = False, cannot_start: int = NO_STATUS) -> int:
    """Run ``argv`` (fds and cwd inherited), wait, and return its status as VMailMgr sees it.

    The exit code; -1 when it died from a signal; 127 when the program could not be executed;
    ``cannot_start`` when no process could be started (or waited for). ``search`` looks
    ``argv[0]`` up in ``$PATH`` (``execvp``).
    """
    _flush_standard_streams()
    spawn = os.posix_spawnp if search else os.posix_spawn
    try:
        pid = spawn(argv[0], argv, dict(environ), setsigdef=child_default_signals())
    except OSError as exc:
        return EXEC_FAILED if exc.errno in _EXEC_ERRNOS else cannot_start
    try:
        _, status = os.waitpid(pid, 0)
    except OSError:
        return cannot_start
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else NO_STATUS


def run_hook(
    name: str,
    directories: Iterable[str],
    environ: Mapping[str, str] | None = None,
    *,
    cannot_start: int = NO_STATUS,
    skip_directories: bool = False,
) -> int:
    """VMailMgr's ``execute(name)``: ``<dir>/<name>`` from each directory in turn.

    Returns the first non-zero result, else 0 (see the module docstring for the rules and
    for what ``cannot_start`` and ``skip_directories`` keep). ``environ`` defaults to
    ``os.environ``.
    """
    previous = None
    for directory in directories:
        if directory == previous:
            continue
        previous = directory
        path = os.path.join(directory, name)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if not mode & 0o111 or (skip_directories and stat.S_ISDIR(mode)):
            continue
        code = spawn_wait([path], os.environ if environ is None else environ, cannot_start=cannot_start)
        if code != 0:
            return code
    return 0
