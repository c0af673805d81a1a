"""Opening a base user's ``passwd.cdb`` safely; shared by the live reader and the runtime.

The table lives in a directory the base user controls, and readers may run as root, so the
file is opened with ``O_NOFOLLOW`` (a planted symlink is refused, not followed), must be a
regular file, and is read into memory (small tables) or mapped read-only (large ones). A 0-byte table is reported as corrupt (VMailMgr
crashes on it [compat: table-files]); a missing one means "no users yet".
"""

from __future__ import annotations

import errno
import os
import stat
import time

from .formats.cdb import CdbError, CdbReader
from .formats.config import password_file_problem
from .formats.vpwentry import decode_record, user_key
from .model import VirtualUser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    StrPath = str | os.PathLike[str]


def read_regular(
    path: StrPath, *, dir_fd: int | None = None, follow_symlinks: bool = False, limit: int | None = None
) -> bytes | None:
    """A regular file's bytes (at most ``limit``); None when missing, unreadable or not regular.

    Files in a base user's home are read with ``follow_symlinks=False`` (the default): the base
    user could point a symlink at root's files. Root-owned control and config files may be
    symlinks. ``dir_fd`` reads ``path`` relative to an open directory (``openat``).
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        left = limit if limit is not None else -1
        while left:
            chunk = os.read(fd, 65536 if left < 0 else min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left = left - len(chunk) if left > 0 else left
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


class UnsafeFile(OSError):
    """A file that is not read: missing where it must exist, a symlink where none is followed, not
    a regular file, larger than its cap, or hard-linked. ``str()`` is the message, which names
    the file; ``reason`` is the same without the file's name (for messages that name it their
    own way, such as ``{file: PATH}``)."""

    def __init__(self, code: int | None, message: str, reason: str | None = None) -> None:
        super().__init__(code, message)
        self.reason = message if reason is None else reason

    def __str__(self) -> str:
        return str(self.strerror)


_FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_bounded(
    path: StrPath,
    *,
    limit: int,
    dir_fd: int | None = None,
    follow_symlinks: bool = False,
    max_links: int | None = None,
    where: str | None = None,
) -> bytes | None:
    """A regular file's bytes, None when it does not exist; `UnsafeFile` saying why for anything else.

    The one reader of files that crossed a trust boundary and must be refused with a reason
    rather than treated as missing: a tenant's home read as root, the YAML files and
    ``{file:}`` secrets. Opened non-blocking (a FIFO never hangs the reader), regular files only
    (``/dev/zero`` or a socket is refused, not read), never more than ``limit`` bytes (a sparse
    1 GiB file is refused by its size, and a file that grows while read by what was read: never
    truncated), with ``max_links`` a file with more hard links is refused (a hard link to
    another tenant's or root's file must not be read and shown). ``where`` is the name used in
    messages (default ``path``).
    """
    name = where or os.fspath(path)

    def refuse(code: int, reason: str) -> UnsafeFile:
        return UnsafeFile(code, f"{name}: {reason}", reason)

    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except ValueError:  # a NUL in the name
        raise refuse(errno.EINVAL, "the file name contains a NUL character") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise refuse(exc.errno, "is a symbolic link; refusing to follow it") from None
        raise refuse(exc.errno or errno.EIO, exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "an unknown kind of file")
            raise refuse(errno.EINVAL, f"not a regular file ({kind})")
        if max_links is not None and info.st_nlink > max_links:
            raise refuse(
                errno.EMLINK, f"has {info.st_nlink} hard links; refusing to read it (it may be another file's content)"
            )
        if info.st_size > limit:
            raise refuse(errno.EFBIG, f"larger than {limit:,} bytes")
        data = _read_upto(fd, limit + 1)
        if len(data) > limit:
            raise refuse(errno.EFBIG, f"larger than {limit:,} bytes")
        return data
    except UnsafeFile:
        raise
    except OSError as exc:
        raise refuse(exc.errno or errno.EIO, exc.strerror or str(exc)) from None
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is out (pipes, sockets and full disks write short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


#: A temp table nobody holds (flock) and nobody touched for this long is a crash's leftover.
STALE_AFTER = 5.0


def clear_stale_temp(dir_fd: int, tmpname: str, stale_after: float, log: Callable[[str], None]) -> bool:
    """The shared rule for ``passwd.cdb.tmp`` (apply and authpipe's PASSWD): True when free.

    VMailMgr takes the temp file with ``O_EXCL`` as its only lock, so one left by a crash blocks
    every later write [compat: table-files]. Our writers also ``flock`` it while writing. A leftover that
    nobody holds and that has not changed for ``stale_after`` seconds is removed with a message
    (an unlocked young one may be a running ``vadduser``, which does not flock: wait for it).
    A symlink in its place is never a writer's temp file and goes at once; one we may not open
    (another writer's, before its chown) is waited for.
    """
    try:
        fd = os.open(tmpname, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return True
    except PermissionError:
        return False
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        os.unlink(tmpname, dir_fd=dir_fd)
        log(f"removed {tmpname}: a symbolic link where a temp file belongs")
        return True
    from fcntl import LOCK_EX, LOCK_NB, flock  # only writers get here, not every login or delivery

    try:
        try:
            flock(fd, LOCK_EX | LOCK_NB)
        except BlockingIOError:
            return False
        info = os.fstat(fd)
        age = time.time() - info.st_mtime
        if age < stale_after:
            return False
        try:
            now = os.stat(tmpname, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return True
        if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            return False
        os.unlink(tmpname, dir_fd=dir_fd)
        log(f"removed stale {tmpname} (left by an interrupted write {age:.0f}s ago; nobody held it)")
        return True
    finally:
        os.close(fd)


class TableError(OSError):
    """The table exists but cannot be used (symlink, not a file, unreadable)."""


def table_path(home: StrPath, password_file: str = "passwd") -> str:
    """``<password-file>.cdb`` in the base user's home; `TableError` for an unsafe name."""
    problem = password_file_problem(password_file)
    if problem is not None:
        raise TableError(problem)
    return os.path.join(home, password_file + ".cdb")


#: Tables up to this size are read into memory, larger ones are mapped. Every login and delivery
#: is a fresh process that looks one key up: reading a few kilobytes costs less than loading the
#: ``mmap`` extension, and a big table is better mapped than copied (a 10,000-user table is
#: about 1 MB). Either way the reader sees one complete file: tables are only ever replaced by
#: a rename, never rewritten in place.
READ_LIMIT = 256 * 1024


def open_table(
    path: StrPath, read_limit: int = READ_LIMIT, *, max_size: int | None = None, max_links: int | None = None
) -> CdbReader | None:
    """A reader over the table at ``path``; None if it does not exist.

    ``read_limit`` 0 always maps the file: a long-lived process that keeps many tables open
    (authpipe) shares their pages with the page cache instead of holding copies.

    The management side, which reads every tenant's table as root, also passes ``max_size``
    (a larger file is refused before it is mapped) and ``max_links`` (a table with more hard
    links may be another tenant's table: refused, never read or copied), and gets the layout
    checked (`CdbReader.check_layout`) before any record is read.
    """
    opened = open_table_fd(path, max_size=max_size, max_links=max_links)
    if opened is None:
        return None
    fd, info = opened
    try:
        return table_reader(fd, info, path, read_limit, check_layout=max_size is not None)
    finally:
        os.close(fd)


def open_table_fd(
    path: StrPath, *, max_size: int | None = None, max_links: int | None = None
) -> tuple[int, os.stat_result] | None:
    """The first half of `open_table`: the table opened and checked by its ``fstat`` (a regular
    file, not empty, within ``max_links`` and ``max_size``), nothing read yet; None if it does
    not exist. The caller closes the descriptor. The plan cache uses the ``fstat`` it returns:
    a cached decoding is used only for a file that passed these very checks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a symlink
            raise TableError(f"{path}: is a symbolic link; refusing to follow it") from None
        raise TableError(f"{path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TableError(f"{path}: not a regular file")
        if info.st_size == 0:
            raise CdbError(f"{path}: empty file (0 bytes) is not a cdb")
        if max_links is not None and info.st_nlink > max_links:
            raise TableError(f"{path}: has {info.st_nlink} hard links; refusing to read it (it may be another table)")
        if max_size is not None and info.st_size > max_size:
            raise TableError(f"{path}: {info.st_size} bytes, more than the {max_size} a table may have")
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def table_reader(
    fd: int, info: os.stat_result, path: StrPath, read_limit: int = READ_LIMIT, *, check_layout: bool = False
) -> CdbReader:
    """The second half of `open_table`: a reader over the opened table (read into memory up to
    ``read_limit`` bytes, mapped beyond), its layout checked when ``check_layout``."""
    try:
        if info.st_size <= read_limit:
            reader = CdbReader(_read_upto(fd, info.st_size))
        else:
            import mmap  # an extension module: loading it costs a login ~0.2 ms, worth it only here

            reader = CdbReader(mmap.mmap(fd, 0, prot=mmap.PROT_READ))
        if check_layout:
            reader.check_layout()
    except CdbError as exc:  # every message about a table names the table
        raise CdbError(f"{path}: {exc}") from None
    return reader


def _read_upto(fd: int, size: int) -> bytes:
    """At most ``size`` bytes from ``fd``; fewer if the file shrank (the cdb checks then fail)."""
    chunks = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def lookup(reader: CdbReader, name: str) -> VirtualUser | None:
    """The user stored under ``name`` (lowercased as VMailMgr does), or None.

    A corrupt record raises `RecordError` naming the key: never a wrong user.
    """
    key = user_key(name)
    data = reader.get(key)
    if data is None:
        return None
    return decode_record(key, data)


def iter_users(reader: CdbReader) -> Iterator[VirtualUser]:
    """Every user in table order; a corrupt record raises `RecordError`."""
    for key, data in reader.items():
        yield decode_record(key, data)
