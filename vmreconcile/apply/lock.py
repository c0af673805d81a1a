"""The one global lock: two applies (or an apply and the authpipe's PASSWD) never interleave.

An ``flock`` on ``Host.lock_path`` (``/run/vmreconcile/apply.lock``, in a directory only its creator can write, under ``--root`` when given).
The kernel drops it when the holder dies, so a SIGKILLed apply never leaves a stale lock
behind. A second apply waits, says so once, and gives up after the timeout.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_TIMEOUT = 60.0


class LockTimeout(OSError):
    """Another vmreconcile process kept the lock for the whole timeout."""


@contextmanager
def global_lock(
    path: Path, timeout: float = DEFAULT_TIMEOUT, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the exclusive lock on ``path`` for the duration of the ``with`` block."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and on_wait is not None:
                    on_wait(f"waiting for {path}: another vmreconcile apply is running (timeout {timeout:.0f}s)")
                    told = True
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        errno.EWOULDBLOCK,
                        f"{path}: still locked by another vmreconcile after {timeout:.0f}s; giving up",
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
