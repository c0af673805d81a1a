"""Atomic, crash-safe, symlink-proof writes inside directories other users control.

Every file is written as: exclusive temp file in the same directory (``O_EXCL|O_NOFOLLOW``),
write, ``fchmod``/``fchown`` on the descriptor, ``fsync``, ``rename`` over the target, ``fsync``
of the directory. A rename replaces a planted symlink or hardlink instead of writing through
it, and modes/owners are set on descriptors we created, never on a path.

Paths inside a base user's home are walked one component at a time with ``openat``-style
calls (``dir_fd``) and ``O_NOFOLLOW|O_DIRECTORY``: a symlinked ``users/`` or maildir parent is
refused (`UnsafePath`), never followed.

The table's temp file is VMailMgr's own ``passwd.cdb.tmp`` (reference §1.1), whose ``O_EXCL``
creation is VMailMgr's only lock. We hold an ``flock`` on it while writing; a temp file that
nobody holds and that has not changed for `STALE_AFTER` seconds is a leftover of a crash: it
is removed with a message, so the next run after a SIGKILL converges without help. A young
unlocked one may be a running ``vadduser`` (which does not flock): we wait for it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..tables import STALE_AFTER, clear_stale_temp, write_all
from .crashpoint import checkpoint

#: Seconds after which an unlocked temp file is considered left over by a crash.
#: How long to wait for a temp file another writer holds.
TEMP_TIMEOUT = 30.0

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(OSError):
    """A path component is a symlink or not what it must be; nothing was written through it."""


class TempBusy(OSError):
    """Another writer (vadduser, another tool) keeps the temp file; try again later."""


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int
    gid: int


Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def open_dir(
    parent_fd: int, name: str, *, create_mode: int | None = None, owner: Owner | None = None, where: str = ""
) -> tuple[int, bool]:
    """Open directory ``name`` under ``parent_fd`` without following a symlink.

    With ``create_mode`` a missing directory is made with exactly that mode (umask ignored)
    and ``owner``. Returns (fd, created).
    """
    created = False
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if create_mode is None:
            raise
        try:
            os.mkdir(name, create_mode, dir_fd=parent_fd)
            created = True
        except FileExistsError:
            pass
        fd = _open_dir_checked(parent_fd, name, where)
        if created:
            os.fchmod(fd, create_mode)
            if owner is not None:
                os.fchown(fd, owner.uid, owner.gid)
            # no fsync per directory: a maildir lost to a crash is missing in the next plan and
            # made again, while an fsync per mkdir would cost milliseconds per new user
        return fd, created
    except OSError as exc:
        raise _unsafe(exc, where or name) from None
    return fd, created


def _open_dir_checked(parent_fd: int, name: str, where: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        raise _unsafe(exc, where or name) from None


def _unsafe(exc: OSError, where: str) -> OSError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return UnsafePath(exc.errno, f"{where}: is a symbolic link or not a directory; refusing to follow it")
    return exc


def split_relative(path: str) -> list[str]:
    """Components of a path relative to a home; refuses absolute paths and ``..``."""
    if path.startswith("/"):
        raise UnsafePath(errno.EINVAL, f"{path}: absolute paths are outside the base user's home; not touched")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafePath(errno.EINVAL, f"{path!r}: not a path inside the base user's home")
    return parts


def walk_dirs(
    base_fd: int,
    parts: list[str],
    *,
    create: Callable[[int], int | None] | None = None,
    owner: Owner | None = None,
    where: str = "",
) -> tuple[int, list[str]]:
    """Open ``parts`` below ``base_fd`` one component at a time (no symlinks).

    ``create(i)`` gives the mode for a missing component ``i`` (None: do not create).
    Returns (fd of the last directory, relative paths created). The caller closes the fd.
    """
    fd = os.dup(base_fd)
    made: list[str] = []
    try:
        for i, part in enumerate(parts):
            mode = create(i) if create is not None else None
            label = f"{where}/{'/'.join(parts[: i + 1])}" if where else "/".join(parts[: i + 1])
            next_fd, created = open_dir(fd, part, create_mode=mode, owner=owner, where=label)
            os.close(fd)
            fd = next_fd
            if created:
                made.append("/".join(parts[: i + 1]))
        return fd, made
    except BaseException:
        os.close(fd)
        raise


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
) -> None:
    """Atomically replace ``name`` in ``dir_fd`` with ``data`` (exact mode and owner).

    A symlink or hardlink at ``name`` is replaced, never written through. ``precheck`` runs
    once the temp file (the writers' lock) is held and may raise to abandon the write.
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


def file_info(dir_fd: int, name: str) -> os.stat_result | None:
    """lstat of ``name`` in ``dir_fd`` (None if missing)."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def backup_name(dir_fd: int, name: str) -> str | None:
    """Keep the current ``name`` as ``name~`` (or ``name~2``, ...) by hard-linking: never clobbers."""
    if file_info(dir_fd, name) is None:
        return None
    for n in range(1, 1000):
        candidate = f"{name}~" if n == 1 else f"{name}~{n}"
        try:
            os.link(name, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            return candidate
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, f"{name}: too many backups")


def unlink_at(dir_fd: int, name: str) -> bool:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    os.fsync(dir_fd)
    return True
