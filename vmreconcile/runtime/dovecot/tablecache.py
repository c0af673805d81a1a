"""authpipe's cached login directory, with tables *copied* into memory instead of mapped.

`courier.directory.Directory` already does what a long-lived login server needs: it resolves login
names with checkvpw's rules, re-reads a table when its ``lstat`` identity changes (apply and
VMailMgr always replace a table through ``rename``, so the next request sees the new one) and
re-checks options and control files at most once a second. vauthd reuses it and changes one
thing, how a table is held:

* **read, never mapped.** A table lives in a directory its base user controls. A mapped file
  that its owner truncates in place makes the next access past the new end raise SIGBUS, which
  would kill the one process serving every login on the host. A private copy cannot change
  under us: a table truncated or scribbled on in place is simply a different (or corrupt)
  file on the next lookup, answered ``F`` for that base user's logins only.
* **bounded.** One table may hold at most `MAX_TABLE_BYTES` (a 100,000-user table is about
  10 MB); the copies together at most `TABLE_BUDGET` bytes and `MAX_TABLES` tables, the least
  recently used dropped first. A larger table is refused (logged, ``F``), not read.
* **re-read at most so often.** A base user owns its table and could replace it in a loop while
  asking for its own logins, making vauthd re-read up to 64 MB per lookup and starve everyone
  else. So a table whose identity changed is read again only once `REREAD_FACTOR` times the
  duration of its last read has passed since that read ended (and never later than
  `MAX_STALE_SECONDS` after it): meanwhile lookups are answered from the previous copy (or
  the previous failure). Re-reading one table thus takes at most about 1/(REREAD_FACTOR+1)
  of vauthd's time, and a change is seen at most that interval late: under a millisecond for
  a small table, ~0.5 s for a 64 MB one, `MAX_STALE_SECONDS` (1 s) at most. A table replaced
  by a symlink is refused at once (that costs one ``lstat``, no read). The throttle outlives
  an eviction (a table evicted and asked for again before its time gets a temporary failure,
  not a re-read) and forgets each path once its time has passed (at most twice `MAX_TABLES`
  paths remembered).
* **failures kept only when the table causes them.** A table refused for its layout, size, a
  symlink or hard links stays refused until it changes. A read that failed for the system's
  reasons (EMFILE, ENFILE, EIO, ENOMEM: `ReadFailed`) is retried once the throttle allows,
  even if the table did not change.
* **checked once.** The layout is checked when the copy is made (`CdbReader.check_layout`),
  and a copy with more than one hard link is refused (it may be another tenant's table).

Opened like `tables.open_table`: ``O_NOFOLLOW`` (a planted symlink is refused), non-blocking
(a FIFO cannot hang the server), regular files only, a 0-byte file is corrupt [compat: table-files].
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import OrderedDict

from ...formats.cdb import CdbError, CdbReader
from ...host import BaseUser, Host
from ...tables import TableError
from ..courier.directory import Directory, Refused, Table, identity
from ..login.core import MSG_TABLE_UNUSABLE

#: The largest table read (VMailMgr's cdb could be 4 GB; no real domain comes close).
MAX_TABLE_BYTES = 64 << 20
#: Bytes of table copies kept at once, and how many tables.
TABLE_BUDGET = 256 << 20
MAX_TABLES = 256
#: A changed table is re-read no sooner than this many times its last read's duration after it...
REREAD_FACTOR = 10
#: ...and no later than this (seconds): the most a change can be seen late.
MAX_STALE_SECONDS = 1.0


class ReadFailed(TableError):
    """The table could not be read for a reason outside it (EMFILE, ENFILE, EIO, ENOMEM, ...).

    Unlike the table's own faults (layout, size, a symlink, hard links), this one says nothing
    about the file: it is retried once the re-read throttle allows, never kept as the answer
    for the table until it changes."""


def read_table(path: str, limit: int = MAX_TABLE_BYTES) -> bytes | None:
    """A private copy of the table at ``path``; None if it does not exist.

    `TableError` for a symlink, a non-regular file, one with hard links or an oversized one;
    `ReadFailed` when the system could not open or read it; `CdbError` for an empty one.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TableError(f"{path}: is a symbolic link; refusing to follow it") from None
        raise ReadFailed(f"{path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TableError(f"{path}: not a regular file")
        if info.st_nlink > 1:
            raise TableError(f"{path}: has {info.st_nlink} hard links; refusing to read it (it may be another table)")
        if info.st_size > limit:
            raise TableError(f"{path}: {info.st_size} bytes is more than vauthd reads ({limit})")
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew while being read
            raise TableError(f"{path}: more than {limit} bytes")
        if size == 0:
            raise CdbError(f"{path}: empty file (0 bytes) is not a cdb")
        return b"".join(chunks)
    except TableError:
        raise  # the table's own fault, with its message (it is an OSError too)
    except OSError as exc:
        raise ReadFailed(f"{path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def checked_reader(data: bytes) -> CdbReader:
    """A reader over a copied table whose layout is checked once, here, not on every lookup."""
    reader = CdbReader(data)
    reader.check_layout()
    return reader


#: The identity kept with a failure that is not the table's fault: equal to no real identity.
_RETRY = object()


def _the_tables_fault(exc: Exception) -> bool:
    """True for failures the table itself causes (kept until it changes), False for the system's
    (`ReadFailed`, any other ``OSError``: EMFILE, EIO, ENOMEM...), which are retried."""
    return isinstance(exc, CdbError) or (isinstance(exc, TableError) and not isinstance(exc, ReadFailed))


class CopiedTables(Directory):
    """`Directory` whose `table` holds private copies within a byte budget (see module doc)."""

    def __init__(
        self,
        host: Host,
        max_table_bytes: int = MAX_TABLE_BYTES,
        budget: int = TABLE_BUDGET,
        max_tables: int = MAX_TABLES,
    ) -> None:
        # No environment of our own: TCPLOCALHOST comes with each request, never from the service.
        super().__init__(host, environ={})
        self.max_table_bytes = max_table_bytes
        self.budget = budget
        self.max_tables = max_tables
        self.reread_factor = REREAD_FACTOR
        self.max_stale = MAX_STALE_SECONDS
        # path -> (identity, table or None, bytes held, the failure to repeat or None)
        self._copies: OrderedDict[str, tuple[object, Table | None, int, str | None]] = OrderedDict()
        self._held = 0
        # path -> monotonic time the table may be read again; kept when its copy is evicted (an
        # eviction must not skip the throttle), dropped once past, at most `max_next_reads`.
        self._next_read: dict[str, float] = {}
        self.max_next_reads = 2 * max_tables

    @property
    def held_bytes(self) -> int:
        """Bytes of table copies held right now (for the benchmark and tests)."""
        return self._held

    def table(self, base: BaseUser) -> Table | None:
        """The base user's table, re-read when its identity changed (at most so often, see the
        module doc); None: no table yet. `Refused` (temporary) when it cannot be used."""
        path = ""
        try:
            path = self.table_file(base)
            ident = identity(path)
        except (TableError, OSError) as exc:
            self._drop(path)
            raise Refused(f"{MSG_TABLE_UNUSABLE}: {exc}", temporary=True) from None
        cached = self._copies.get(path)
        throttled = time.monotonic() < self._next_read.get(path, 0.0)
        if cached is not None and (cached[0] == ident or throttled):
            self._copies.move_to_end(path)  # unchanged, or changed but read too recently: as before
            return self._served(cached)
        if cached is None and throttled:  # evicted right after a read: no copy, and not read again yet
            raise Refused(f"{MSG_TABLE_UNUSABLE}: {path}: dropped from the cache, read again too soon", temporary=True)
        self._drop(path)
        started = time.monotonic()
        data: bytes | None = None
        table = failure = None
        kept_as: object = ident
        try:
            data = read_table(path, self.max_table_bytes) if ident is not None else None
            table = Table(checked_reader(data)) if data is not None else None
        except (TableError, CdbError, OSError) as exc:
            data, failure = None, f"{MSG_TABLE_UNUSABLE}: {exc}"
            if not _the_tables_fault(exc):
                kept_as = _RETRY  # equal to no identity: read again once the throttle allows
        ended = time.monotonic()
        self._throttle(path, ended + min(self.reread_factor * (ended - started), self.max_stale), ended)
        entry = (kept_as, table, len(data) if data is not None else 0, failure)
        self._copies[path] = entry
        self._held += entry[2]
        while len(self._copies) > 1 and (len(self._copies) > self.max_tables or self._held > self.budget):
            self._drop(next(iter(self._copies)))
        return self._served(entry)

    def _throttle(self, path: str, until: float, now: float) -> None:
        """Remember when ``path`` may be read again; forget the times already past, and the
        oldest ones beyond `max_next_reads` (a tenant naming ever new password files)."""
        reads = self._next_read
        reads.pop(path, None)  # re-inserted last: the dict stays in (roughly) time order
        reads[path] = until
        if len(reads) > self.max_next_reads:
            for past in [name for name, when in reads.items() if when <= now]:
                del reads[past]
            while len(reads) > self.max_next_reads:
                del reads[next(iter(reads))]

    @staticmethod
    def _served(entry: tuple[object, Table | None, int, str | None]) -> Table | None:
        if entry[3] is not None:
            raise Refused(entry[3], temporary=True)
        return entry[1]

    def _drop(self, path: str) -> None:
        entry = self._copies.pop(path, None)
        if entry is not None:
            self._held -= entry[2]

    def forget_all(self) -> None:
        """Drop every cached table and file (SIGHUP): the next lookups read everything afresh."""
        self._copies.clear()
        self._held = 0
        self._next_read.clear()
        self._parsed.clear()
