"""The message on standard input: made seekable, measured, scanned and copied without loading it.

qmail-local hands vdeliver the queued message as a seekable file, and VMailMgr relies on that
(it rewinds stdin for the forward and for the postdeliver hook). We keep the same model but
never trust the shared file offset: every read is a ``pread`` or a ``sendfile`` with an
explicit offset, so hooks that read stdin cannot disturb a delivery. When stdin is a pipe
(tests, manual runs) it is first spooled, chunk by chunk, into an unlinked file that then
replaces fd 0. Memory stays flat whatever the message size.
"""

from __future__ import annotations

import errno
import os
import stat

from ...tables import write_all
from .errors import temporary

CHUNK = 1 << 16
#: Longest run ``sendfile`` is asked to copy at once (keeps each call bounded).
SENDFILE_MAX = 1 << 24


class Message:
    """The message as qmail-local gave it: bytes ``0..size`` of ``fd`` (normally fd 0)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    @classmethod
    def from_stdin(cls, spool_dir: str = ".") -> Message:
        """fd 0 as a seekable regular file (spooling a pipe first); its size is the message size."""
        info = os.fstat(0)
        if not stat.S_ISREG(info.st_mode):
            _spool_stdin(spool_dir)
            info = os.fstat(0)
        return cls(0, info.st_size)

    def rewind(self) -> bool:
        """Put the shared offset back at 0 for a hook [compat: vdeliver]; False if that is impossible."""
        try:
            os.lseek(self.fd, 0, os.SEEK_SET)
        except OSError:
            return False
        return True

    def header_has_line(self, line: bytes) -> bool:
        """True if a header line (before the first empty line) equals ``line``, ignoring case.

        This is qmail-local's loop check with its own ``Delivered-To:`` line. Trailing CR/LF
        are ignored on both sides, so a CRLF message loops as well. Only the first
        ``len(line)+2`` bytes of a line are ever kept, so a huge header costs no memory.
        """
        want = line.rstrip(b"\r\n").lower()
        if not want:
            return False
        keep = len(want) + 2
        offset, current, length = 0, b"", 0
        while offset < self.size:
            chunk = os.pread(self.fd, min(CHUNK, self.size - offset), offset)
            if not chunk:
                break
            offset += len(chunk)
            start = 0
            while True:
                end = chunk.find(b"\n", start)
                piece = chunk[start:] if end < 0 else chunk[start:end]
                if len(current) < keep:
                    current += piece[: keep - len(current)]
                length += len(piece)
                if end < 0:
                    break
                if length <= keep:
                    text = current.rstrip(b"\r")
                    if not text:
                        return False
                    if text.lower() == want:
                        return True
                current, length, start = b"", 0, end + 1
        return length <= keep and current.rstrip(b"\r").lower() == want

    def copy_to(self, out_fd: int) -> None:
        """Write the whole message to ``out_fd`` (a file or a pipe); OSError on failure."""
        offset = 0
        try:
            while offset < self.size:
                sent = os.sendfile(out_fd, self.fd, offset, min(SENDFILE_MAX, self.size - offset))
                if sent == 0:
                    raise OSError(errno.EIO, "the message file ended early")
                offset += sent
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS) or offset:
                raise
            self._copy_by_reading(out_fd, offset)

    def _copy_by_reading(self, out_fd: int, offset: int) -> None:
        while offset < self.size:
            chunk = os.pread(self.fd, min(CHUNK, self.size - offset), offset)
            if not chunk:
                raise OSError(errno.EIO, "the message file ended early")
            write_all(out_fd, chunk)
            offset += len(chunk)


def _spool_stdin(directory: str) -> None:
    """Copy a non-seekable stdin into an unlinked file in ``directory`` and make that fd 0."""
    try:
        fd = os.open(directory, os.O_RDWR | os.O_TMPFILE | os.O_CLOEXEC, 0o600)
    except OSError:
        fd = _named_unlinked(directory)
    try:
        while True:
            chunk = os.read(0, CHUNK)
            if not chunk:
                break
            write_all(fd, chunk)
        os.dup2(fd, 0)
    except OSError as exc:
        raise temporary(f"Could not spool the message from standard input: {exc.strerror}") from None
    finally:
        os.close(fd)


def _named_unlinked(directory: str) -> int:
    """Fallback for filesystems without ``O_TMPFILE``: create exclusively, unlink at once."""
    for attempt in range(10):
        name = os.path.join(directory, f".vdeliver-spool.{os.getpid()}.{attempt}")
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        except OSError as exc:
            raise temporary(f"Could not spool the message from standard input: {exc.strerror}") from None
        os.unlink(name)
        return fd
    raise temporary("Could not spool the message from standard input: no free spool name")
