"""Writing one message into a maildir so that ``new/`` only ever holds whole messages.

The maildir protocol (cr.yp.to/proto/maildir.html) done fully, where VMailMgr is weak
[compat: vdeliver, differences]:

* a unique name ``<sec>.M<usec>P<pid>Q<n>.<host>,S=<size>``, the host name with ``/`` and
  ``:`` escaped as ``\\057`` and ``\\072``; ``,S=`` lets maildir++ readers skip a ``stat``;
* ``tmp/<name>`` created with ``O_CREAT|O_EXCL|O_NOFOLLOW``, written, ``fsync``ed, closed;
* only then ``link`` into ``new/`` (``rename`` where the filesystem has no hard links),
  ``unlink`` of the ``tmp/`` name, and an ``fsync`` of ``new/`` so the entry survives a crash.

A failing open or write is retried a bounded number of times (never VMailMgr's endless loop);
the ``tmp/`` file is removed after every failure. A process killed mid-write leaves at most a
file in ``tmp/`` (readers clean those after 36 hours), never a partial file in ``new/``.
"""

from __future__ import annotations

import errno
import os
import stat
import time

from .errors import DeliveryFailure, permanent, temporary

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing-only imports cost start-up time in a per-message process
    from collections.abc import Callable

#: How many times a failing open/write of the ``tmp/`` file is tried in all.
ATTEMPTS = 3
#: Pause before the second and third attempt, in seconds.
RETRY_PAUSE = 0.25

_counter = 0


def unlink_quietly(path: str) -> None:
    """Remove ``path`` if it is there; cleanup must never raise over the real error."""
    try:  # noqa: SIM105 - contextlib would be one more import per message
        os.unlink(path)
    except OSError:
        pass


def escaped_hostname() -> str:
    """``gethostname()`` with ``/`` and ``:`` escaped as the maildir spec asks."""
    name = os.uname().nodename or "localhost"
    return name.replace("/", "\\057").replace(":", "\\072")


def unique_name(size: int, now_ns: int | None = None) -> str:
    """A new unique file name; ``Q<n>`` counts deliveries made by this process."""
    global _counter
    _counter += 1
    now_ns = time.time_ns() if now_ns is None else now_ns
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    return f"{seconds}.M{nanos // 1000}P{os.getpid()}Q{_counter}.{escaped_hostname()},S={size}"


def check_maildir(directory: str) -> None:
    """``tmp/`` and ``new/`` must be directories [compat: vdeliver], else a temporary failure."""
    for sub in ("tmp", "new"):
        try:
            info = os.stat(os.path.join(directory, sub))
        except OSError:
            info = None
        if info is None or not stat.S_ISDIR(info.st_mode):
            raise temporary("Destination directory does not appear to be a maildir.")


class PendingFile:
    """A complete, fsynced message in ``tmp/`` waiting to be committed into ``new/``."""

    def __init__(self, directory: str, name: str, size: int) -> None:
        self.directory = directory
        self.name = name
        self.size = size
        self.committed = False

    @property
    def tmp_path(self) -> str:
        return os.path.join(self.directory, "tmp", self.name)

    @property
    def new_path(self) -> str:
        return os.path.join(self.directory, "new", self.name)

    def discard(self) -> None:
        """Remove the ``tmp/`` file (every failure path calls this)."""
        if not self.committed:
            unlink_quietly(self.tmp_path)

    def commit(self) -> None:
        """Make the message visible in ``new/``; on failure the ``tmp/`` file is removed."""
        try:
            try:
                os.link(self.tmp_path, self.new_path)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                os.rename(self.tmp_path, self.new_path)
        except OSError as exc:
            self.discard()
            raise temporary(f"Error linking the temp file to the new file. ({exc.strerror})") from None
        self.committed = True
        unlink_quietly(self.tmp_path)  # delivered; a leftover tmp/ link is cleaned by readers
        _fsync_dir(os.path.join(self.directory, "new"))


def _fsync_dir(path: str) -> None:
    """Best effort: the entry is already visible, so a failure here must not make qmail retry
    (that would put a second copy in the mailbox)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_pending(directory: str, size: int, write: Callable[[int], None]) -> PendingFile:
    """Create ``tmp/<unique>``, let ``write(fd)`` fill it with ``size`` bytes, fsync, close.

    ``EDQUOT`` bounces at once; any other failure is retried up to `ATTEMPTS` times
    with a fresh name, then becomes a temporary failure. Nothing is left in ``tmp/``.
    """
    last = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(RETRY_PAUSE * attempt)
        pending = PendingFile(directory, unique_name(size), size)
        try:
            fd = os.open(pending.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.EDQUOT:
                raise permanent("Delivery failed due to system quota violation") from None
            last = f"Could not create a file in the maildir: {exc.strerror}"
            continue
        try:
            try:
                write(fd)
                if os.fstat(fd).st_size != size:
                    raise OSError(errno.EIO, "the file does not have the expected size")
                os.fsync(fd)
            finally:
                os.close(fd)
        except DeliveryFailure:
            pending.discard()
            raise
        except OSError as exc:
            pending.discard()
            if exc.errno == errno.EDQUOT:
                raise permanent("Delivery failed due to system quota violation") from None
            last = f"Error writing the output file. ({exc.strerror})"
            continue
        except BaseException:
            pending.discard()
            raise
        return pending
    raise temporary(last)
