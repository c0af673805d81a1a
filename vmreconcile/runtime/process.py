"""VMailMgr's executable hooks (§3.4), as vdeliver runs them.

For each config directory, global (``/etc/vmailmgr``) first and then the domain's
``~base/.vmailmgr``, ``<dir>/<name>`` runs if it exists with any execute bit set: no arguments,
our environment, cwd and fds 0-2. A non-zero global result stops there. A skipped hook counts
as 0, a hook killed by a signal as -1, one that cannot be executed as 127.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def run_hook(name: str, directories: Iterable[str]) -> int:
    """Run hook ``name`` from each directory in turn; the first non-zero result, else 0."""
    seen: list[str] = []
    for directory in directories:
        path = os.path.join(directory, name)
        if path in seen:
            continue
        seen.append(path)
        try:
            info = os.stat(path)
        except OSError:
            continue
        if not info.st_mode & 0o111 or stat.S_ISDIR(info.st_mode):
            continue
        result = _execute(path)
        if result != 0:
            return result
    return 0


def _execute(path: str) -> int:
    sys.stdout.flush()
    try:
        pid = os.posix_spawn(path, [path], os.environ, setsigdef=default_signals())
    except OSError:
        return 127
    try:
        _, status = os.waitpid(pid, 0)
    except OSError:
        return -1
    if os.WIFSIGNALED(status):
        return -1
    return os.waitstatus_to_exitcode(status)


def default_signals() -> tuple[int, ...]:
    """SIGPIPE and SIGXFSZ, which Python ignores and a child must get back at their defaults.

    Taken from the built-in ``_signal``: ``signal`` imports ``enum`` (~4 ms per message).
    """
    try:
        from _signal import SIGPIPE, SIGXFSZ
    except ImportError:  # pragma: no cover - CPython always has _signal
        from signal import SIGPIPE, SIGXFSZ
    return (SIGPIPE, SIGXFSZ)
