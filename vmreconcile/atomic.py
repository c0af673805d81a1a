"""The one atomic file writer: every file the management side writes is replaced through it.

A file is written as: exclusive temp file in the same directory (``O_EXCL|O_NOFOLLOW``),
write, ``fchmod``/``fchown`` on the descriptor, ``fsync``, ``rename`` over the target, ``fsync``
of the directory. Readers see the old file or the new one, never a mix; a rename replaces a
planted symlink or hardlink instead of writing through it, and modes and owners are set on
descriptors we created, never on a path. Apply writes tables, options and control files with
`write_file_at` (through ``apply/writer.py``, which walks homes safely); plan files, exported
configurations and runtime launchers use `write_file`. The plan cache, whose reader verifies every
file it loads, uses `write_cache_file_at`: atomic too, but neither durable nor waiting.

A table's temp file is VMailMgr's own ``passwd.cdb.tmp`` ([compat: table-files]), whose
``O_EXCL`` creation is VMailMgr's only lock. We hold an ``flock`` on every temp file while
writing; one that nobody holds and that has not changed for ``STALE_AFTER`` seconds is a
leftover of a crash: it is removed with a message, so the next run after a SIGKILL converges
without help. A young unlocked one may be a running ``vadduser`` (which does not flock): we
wait for it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from .tables import STALE_AFTER, clear_stale_temp, write_all

#: How long to wait for a temp file another writer holds.
TEMP_TIMEOUT = 30.0


class TempBusy(OSError):
    """Another writer (vadduser, another tool) keeps the temp file; try again later."""


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int
    gid: int


Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def acquire_temp(
    dir_fd: int,
    tmpname: str,
    *,
    where: str,
    log: Log = _quiet,
    stale_after: float | None = None,
    timeout: float | None = None,
) -> int:
    """Create ``tmpname`` exclusively and flock it; clear a stale leftover first.

    Returns the fd (write-only, flocked). Raises `TempBusy` if a live writer keeps it.
    """
    stale_after = STALE_AFTER if stale_after is None else stale_after
    deadline = time.monotonic() + (TEMP_TIMEOUT if timeout is None else timeout)
    while True:
        try:
            fd = os.open(
                tmpname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
            )
        except FileExistsError:
            if clear_stale_temp(dir_fd, tmpname, stale_after, lambda text: log(text.replace(tmpname, where, 1))):
                continue
            if time.monotonic() > deadline:
                raise TempBusy(
                    errno.EBUSY,
                    f"{where}: exists and another writer (vadduser, vmreconcile) is still using it; try again later",
                ) from None
            time.sleep(0.05)
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd


def write_file_at(
    dir_fd: int,
    name: str,
    data: bytes,
    *,
    mode: int,
    owner: Owner | None,
    where: str,
    tmpname: str | None = None,
    log: Log = _quiet,
    precheck: Callable[[], None] | None = None,
    checkpoint: Callable[[str], None] = _quiet,
) -> None:
    """Atomically replace ``name`` in ``dir_fd`` with ``data`` (exact mode and owner).

    A symlink or hardlink at ``name`` is replaced, never written through. ``precheck`` runs
    once the temp file (the writers' lock) is held and may raise to abandon the write.
    ``checkpoint(label)`` is called between the steps (apply's crash-safety tests kill there).
    """
    tmpname = tmpname or f".{name}.vmreconcile-tmp"
    fd = acquire_temp(dir_fd, tmpname, where=f"{where}/{tmpname}" if where else tmpname, log=log)
    renamed = False
    try:
        if precheck is not None:
            precheck()
        checkpoint(f"{name}: temp created")
        half = len(data) // 2
        write_all(fd, data[:half])
        checkpoint(f"{name}: half written")
        write_all(fd, data[half:])
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, owner.uid, owner.gid)
        os.fsync(fd)
        checkpoint(f"{name}: temp synced")
        os.rename(tmpname, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        renamed = True
        checkpoint(f"{name}: renamed")
        os.fsync(dir_fd)
    finally:
        if not renamed:
            with contextlib.suppress(OSError):
                os.unlink(tmpname, dir_fd=dir_fd)
        os.close(fd)


def write_file(path: str | os.PathLike[str], data: bytes, *, mode: int) -> None:
    """Atomically replace the file at ``path`` with ``data`` and exactly ``mode`` (no chown).

    The temp file is created with mode 0600 and changed to ``mode`` only when complete, so a
    plan file with fresh hashes is never readable by others, not even half-written.
    """
    directory, name = os.path.split(os.fspath(path))
    dir_fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        write_file_at(dir_fd, name, data, mode=mode, owner=None, where=directory or ".")
    finally:
        os.close(dir_fd)


def write_cache_file_at(dir_fd: int, name: str, data: bytes, *, mode: int) -> None:
    """Atomically replace ``name`` in ``dir_fd`` with a file that is only a cache (``cache/``).

    The same temp + rename as `write_file_at`, minus what a cache does not need: no ``fsync``
    (after a crash the reader finds a wrong checksum and rebuilds) and no waiting for another
    writer (each writer has its own temp file, ``.NAME.tmp-PID``; the last rename wins).
    Temp files of writers that died are removed.
    """
    tmpname = f".{name}.tmp-{os.getpid()}"
    _remove_dead_writers_temps(dir_fd, name)
    fd = os.open(tmpname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    renamed = False
    try:
        write_all(fd, data)
        os.fchmod(fd, mode)
        os.rename(tmpname, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        renamed = True
    finally:
        if not renamed:
            with contextlib.suppress(OSError):
                os.unlink(tmpname, dir_fd=dir_fd)
        os.close(fd)


def _remove_dead_writers_temps(dir_fd: int, name: str) -> None:
    prefix = f".{name}.tmp-"
    for entry in os.listdir(dir_fd):
        pid = entry[len(prefix) :] if entry.startswith(prefix) else ""
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(entry, dir_fd=dir_fd)
        except OSError:
            pass  # alive (EPERM: another user's process)
