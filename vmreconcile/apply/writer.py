"""Crash-safe, symlink-proof writes inside directories other users control.

Every file is replaced by `atomic.write_file_at` (exclusive temp file, ``fsync``, ``rename``,
``fsync`` of the directory; modes and owners set on descriptors, never on paths), here with
the crash checkpoints the crash-safety tests kill at.

Paths inside a base user's home are walked one component at a time with ``openat``-style
calls (``dir_fd``) and ``O_NOFOLLOW|O_DIRECTORY``: a symlinked ``users/`` or maildir parent is
refused (`UnsafePath`), never followed.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from .. import atomic
from ..atomic import Owner, TempBusy, acquire_temp
from .crashpoint import checkpoint

__all__ = ["Owner", "TempBusy", "UnsafePath", "acquire_temp", "open_dir", "walk_dirs", "write_file_at"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(OSError):
    """A path component is a symlink or not what it must be; nothing was written through it."""


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


def write_file_at(dir_fd: int, name: str, data: bytes, **options: Any) -> None:
    """`atomic.write_file_at` with this package's crash checkpoints (see `crashpoint`)."""
    atomic.write_file_at(dir_fd, name, data, checkpoint=checkpoint, **options)


def file_info(dir_fd: int, name: str) -> os.stat_result | None:
    """lstat of ``name`` in ``dir_fd`` (None if missing)."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def backup_candidates(name: str) -> list[str]:
    """The names a backup of ``name`` may take, in order: ``name~``, ``name~2``, ..."""
    return [f"{name}~" if n == 1 else f"{name}~{n}" for n in range(1, 1000)]


def backup_name(dir_fd: int, name: str) -> str | None:
    """Keep the current ``name`` as ``name~`` (or ``name~2``, ...) by hard-linking: never clobbers."""
    if file_info(dir_fd, name) is None:
        return None
    for candidate in backup_candidates(name):
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
