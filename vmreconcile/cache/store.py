"""The cache directory and its files: trusted only when nobody else could have written them.

The cache holds decoded tables (with their password hashes) and checked configuration, and a
root process acts on what it loads, so a file is used only when:

* the directory (``/var/cache/vmreconcile``; under ``--root``, inside DIR) is a real directory,
  not a symlink, owned by the user running vmreconcile, with no permission for group or others
  (it is made 0700 when missing), opened once and used through its descriptor;
* the file is a regular file, not a symlink, owned by that user, mode 0600 or stricter, with
  one link, at most `FILE_LIMIT` bytes;
* it starts with `MAGIC` and the sha256 of the rest, which is a ``marshal`` dump (plain
  tuples, strings and numbers: no code runs when it is loaded, unlike pickle) of
  ``(name, fingerprint, body)`` where the fingerprint is this very vmreconcile's
  (`code_fingerprint`: its version and the size and time of every module), so a cache written
  by other code is never read.

A file that fails any check is treated as missing and replaced by the next save; a directory
that fails is not used at all (nothing is loaded or saved). No failure here is ever an error of
the command: the cache only saves time. The callers check the shape of what they load
(`valid_shape` helpers in their own modules) before they use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import stat
import sys
import time
from functools import lru_cache
from typing import Any

from .. import __version__
from ..atomic import write_cache_file_at

MAGIC = b"vmreconcile-cache 1\n"
_DIGEST_SIZE = 32
#: The largest cache file read (a 64 MiB configuration's records are well below).
FILE_LIMIT = 1 << 30
#: An entry made from a file whose last change is this recent is not kept: file timestamps
#: are coarse (a kernel tick, or a whole second on some filesystems), so a second change within
#: the same tick would leave the timestamps as they were. Keys are only kept once the file has
#: been left alone for longer than any timestamp granularity.
SETTLE_NS = 2_000_000_000

StatKey = tuple[int, int, int, int, int]


def stat_key(info: os.stat_result) -> StatKey:
    """What identifies one version of a file: device, inode, size, modification and change time
    (ns). A rewrite in place changes the times; a replacement by rename changes the inode (and
    the change time, which nobody can set back)."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def settled(info: os.stat_result, now_ns: int | None = None) -> bool:
    """True when the file last changed at least `SETTLE_NS` ago, so that any later change gets
    other timestamps. A file with a modification time in the future is never settled."""
    now = time.time_ns() if now_ns is None else now_ns
    return max(info.st_mtime_ns, info.st_ctime_ns) <= now - SETTLE_NS


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A digest of the code that writes and reads cache entries: the version, the Python, and
    the path, size and modification time of every module of the package. Another install, an
    upgrade or an edited checkout never reads this one's entries."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = hashlib.sha256(f"{__version__}\0{sys.version}\0{package}".encode())
    for directory, subdirs, files in os.walk(package):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    info = os.stat(path)
                    digest.update(f"\0{path}\0{info.st_size}\0{info.st_mtime_ns}".encode())
    return digest.hexdigest()


class CacheStore:
    """One trusted cache directory (`open`), its files loaded and saved by name."""

    def __init__(self, path: str, dir_fd: int) -> None:
        self.path = path
        self._dir_fd = dir_fd

    @classmethod
    def open(cls, path: str, *, create: bool = True) -> CacheStore | None:
        """The cache at ``path``, made (0700, and its missing parents 0755) when ``create``;
        None when it cannot be made or is not to be trusted (see the module doc)."""
        if create:
            with contextlib.suppress(OSError):
                parent = os.path.dirname(path)
                if not os.path.isdir(parent):
                    os.makedirs(parent, mode=0o755, exist_ok=True)
                os.mkdir(path, 0o700)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        info = os.fstat(fd)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            os.close(fd)
            return None
        return cls(path, fd)

    def close(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def __enter__(self) -> CacheStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def load(self, name: str) -> object | None:
        """The body saved under ``name``, or None when there is none or it fails a check."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self._dir_fd)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if (
                not stat.S_ISREG(info.st_mode)
                or info.st_uid != os.geteuid()
                or info.st_mode & 0o077
                or info.st_nlink != 1
                or info.st_size > FILE_LIMIT
            ):
                return None
            raw = _read_all(fd, info.st_size)
        except OSError:
            return None
        finally:
            os.close(fd)
        head = len(MAGIC)
        payload = memoryview(raw)[head + _DIGEST_SIZE :]
        if raw[:head] != MAGIC or hashlib.sha256(payload).digest() != raw[head : head + _DIGEST_SIZE]:
            return None
        try:
            loaded = marshal.loads(payload)
        except (EOFError, ValueError, TypeError):
            return None
        if type(loaded) is not tuple or len(loaded) != 3 or loaded[0] != name or loaded[1] != code_fingerprint():
            return None
        return loaded[2]

    def save(self, name: str, body: Any) -> bool:
        """Save ``body`` (plain values only) under ``name``; False when it could not be written
        (a full disk, a read-only filesystem): the next run simply finds no entry."""
        try:
            payload = marshal.dumps((name, code_fingerprint(), body))
        except ValueError:
            return False
        blob = b"".join((MAGIC, hashlib.sha256(payload).digest(), payload))
        try:
            write_cache_file_at(self._dir_fd, name, blob, mode=0o600)
        except OSError:
            return False
        return True

    def remove(self, name: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=self._dir_fd)

    def names(self) -> list[str]:
        try:
            return [n for n in os.listdir(self._dir_fd) if not n.startswith(".")]
        except OSError:
            return []

    def mtime_ns(self, name: str) -> int:
        try:
            return os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False).st_mtime_ns
        except OSError:
            return 0


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    left = size + 1  # one more: a file that grew is read whole or refused by the checksum
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
