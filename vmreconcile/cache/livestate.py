"""Decoded tables and maildir checks, remembered by the files' identities (plan's live cache).

A fleet plan reads every base user's table (100,000 records decoded) and checks every user
directory for ``cur/``, ``new/`` and ``tmp/`` (400,000 ``lstat`` calls): most of its time. This
cache keeps

* a table's decoded entries, keyed by its path, its `stat_key` (device, inode, size,
  modification and change time, from the ``fstat`` of the descriptor plan opened it with) and
  the sha256 of its bytes (still read every time: a write through a shared mapping can leave
  the times as they were, so only the bytes prove the decoding current);
* which user directories of a home are maildirs, keyed by the home, the directories the table
  names and the `stat_key` of one ``lstat`` of each directory itself (packed into one string
  per home: comparing 100 directories is then one comparison).

The live reader still opens every table and checks it exactly as without a cache (symlink,
regular file, size, hard links: `tables.open_table_fd`), reads it, and still reads the option
files and ``.qmail-default`` every time; only the decoding is skipped when the key matches. A maildir's
``cur``/``new``/``tmp`` are entries of its directory: adding, removing, renaming or replacing
one (by a symlink, say) changes the directory's modification and change times, and the change
time cannot be set back by anybody, so one ``lstat`` of the directory tells whether the three
are still what they were. Only files and directories that have not changed for
`store.SETTLE_NS` are remembered (timestamps are coarse). Entries are plain tuples, checked
when used; a wrong one is a miss. docs/plan-apply.md ("The plan cache") has the argument in full.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import time
from collections.abc import Callable
from typing import Any

from ..model import USER_FIELD_TABLE, USER_FIELDS, VirtualUser
from .makers import slot_maker
from .store import SETTLE_NS, CacheStore, StatKey, settled, stat_key

NAME = "live"
#: The Python types each user field may hold in a cached table, by the field's unit.
_UNIT_TYPES: dict[str, frozenset[type]] = {
    "key": frozenset((str,)),
    "hash": frozenset((str,)),
    "text": frozenset((str,)),
    "flag": frozenset((bool,)),
    "addresses": frozenset((tuple,)),
    "size": frozenset((int, type(None))),
    "count": frozenset((int, type(None))),
    "expiry": frozenset((int, type(None))),
    "time": frozenset((int,)),
}
_COLUMN_TYPES = tuple(_UNIT_TYPES[f.unit] for f in USER_FIELD_TABLE)
_ADDRESS_COLUMNS = tuple(i for i, f in enumerate(USER_FIELD_TABLE) if f.unit == "addresses")
_make_user: Callable[[tuple[Any, ...]], VirtualUser] = slot_maker(VirtualUser, USER_FIELDS)

#: ((the table's stat key, the sha256 of its bytes), its entries as plain tuples)
TableKey = tuple[StatKey, bytes]
TableEntry = tuple[TableKey, tuple[tuple[Any, ...], ...]]
#: (the directories in the table's order, their packed keys, those that are maildirs)
MaildirEntry = tuple[tuple[str, ...], bytes, tuple[str, ...]]
#: device, inode, size, mtime and ctime (ns) of one directory: `stat_key`, packed
_KEY = struct.Struct("<QQQqq")
#: What stands for a path that is missing or not a directory (never a maildir, so it may match)
#: and, kept, for a directory that had not settled (never matches: such a key is never packed).
_NOT_A_DIRECTORY = bytes(_KEY.size)
_UNSETTLED = b"\xff" * _KEY.size


class LiveCache:
    """The live cache of one run: what it loaded, what this run used or learned, and `save`."""

    def __init__(self, store: CacheStore | None) -> None:
        self._store = store
        self._old_tables, self._old_maildirs = _load(store)
        self._tables: dict[str, TableEntry] = {}
        self._maildirs: dict[str, MaildirEntry] = {}
        self._learned = False
        self._now = time.time_ns()
        self.hits = self.misses = 0
        #: what this run knows not to have changed since it was cached or learned: a table's key
        #: (None: there is none) and a home's packed maildir keys; and each domain's table and home
        self._known_tables: dict[str, TableKey | None] = {}
        self._known_maildirs: dict[str, bytes] = {}
        self._sources: dict[str, tuple[str, str]] = {}

    def users(self, path: str, info: os.stat_result, digest: bytes) -> tuple[VirtualUser, ...] | None:
        """The decoded entries of the table at ``path`` when ``info`` (its ``fstat``) and
        ``digest`` (the sha256 of the bytes just read) are those of the version they were
        decoded from; None otherwise."""
        entry = self._old_tables.get(path)
        key = (stat_key(info), digest)
        if type(entry) is tuple and len(entry) == 2 and entry[0] == key:
            users = _users_of(entry[1])
            if users is not None:
                self._tables[path] = entry
                self._known_tables[path] = key
                self.hits += 1
                return users
        self.misses += 1
        return None

    def remember_users(self, path: str, info: os.stat_result, digest: bytes, users: tuple[VirtualUser, ...]) -> None:
        if settled(info, self._now):
            key = (stat_key(info), digest)
            self._tables[path] = (key, tuple(u.astuple() for u in users))
            self._known_tables[path] = key
            self._learned = True

    def no_table(self, path: str) -> None:
        """There is no table at ``path`` (yet): that too is a state the next run can compare."""
        self._known_tables[path] = None

    def read_domain(self, name: str, table: str, home: str) -> None:
        """The live domain ``name`` was read from the table at ``table`` and the home ``home``."""
        self._sources[name] = (table, home)

    def fingerprint(self, name: str) -> bytes | None:
        """A digest of the live domain ``name``'s table and maildirs as this run read them, when
        both are settled (cached, or old enough to be); None otherwise. The option files and
        ``.qmail-default``, read every time, are not in it: the caller adds their values."""
        table, home = self._sources.get(name, ("", ""))
        if table not in self._known_tables or home not in self._known_maildirs:
            return None
        known = (table, self._known_tables[table], home, self._known_maildirs[home])
        return hashlib.sha256(repr(known).encode("utf-8", "surrogateescape")).digest()

    def maildirs(
        self, home: str, directories: tuple[str, ...], paths: list[str], check: Callable[[str], bool]
    ) -> set[str]:
        """Which of ``directories`` (at ``paths``) are maildirs: one ``lstat`` each, and
        ``check(path)`` (``cur``/``new``/``tmp``) only for a directory whose key does not match."""
        lstat, isdir, pack, now = os.lstat, stat.S_ISDIR, _KEY.pack, self._now - SETTLE_NS
        keys = []
        for path in paths:
            try:
                info = lstat(path)
            except OSError:
                keys.append(_NOT_A_DIRECTORY)
                continue
            if not isdir(info.st_mode):
                keys.append(_NOT_A_DIRECTORY)
                continue
            keys.append(pack(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns))
        blob = b"".join(keys)
        old = self._old_maildirs.get(home)
        known: MaildirEntry | None = old if _valid_maildir_entry(old) else None
        if known is not None and known[0] != directories:
            known = None
        if known is not None and known[1] == blob:
            self._maildirs[home] = known
            self._known_maildirs[home] = blob
            return set(known[2])
        found: set[str] = set()
        kept = []
        for index, (directory, path, key) in enumerate(zip(directories, paths, keys, strict=True)):
            if key is _NOT_A_DIRECTORY:
                kept.append(key)
                continue
            if known is not None and known[1][index * _KEY.size : (index + 1) * _KEY.size] == key:
                verdict = directory in known[2]
            else:
                verdict = check(path)
            if verdict:
                found.add(directory)
            _dev, _ino, _size, mtime, ctime = _KEY.unpack(key)
            kept.append(key if max(mtime, ctime) <= now else _UNSETTLED)
        entry = (directories, b"".join(kept), tuple(d for d in directories if d in found))
        self._maildirs[home] = entry
        self._learned = True
        if entry[1] == blob:  # every directory settled
            self._known_maildirs[home] = blob
        return found

    def save(self, *, whole_host: bool) -> None:
        """Write what this run used and learned. After a read of the whole host, entries it did
        not use are dropped (domains that are gone); after a partial read (``--domain``) they
        are kept. Nothing is written when nothing changed."""
        if self._store is None:
            return
        tables, maildirs = self._tables, self._maildirs
        if not whole_host:
            tables = {**self._old_tables, **tables}
            maildirs = {**self._old_maildirs, **maildirs}
        if not self._learned and len(tables) == len(self._old_tables) and len(maildirs) == len(self._old_maildirs):
            return
        self._store.save(NAME, (tables, maildirs))


def _load(store: CacheStore | None) -> tuple[dict[str, Any], dict[str, Any]]:
    body = store.load(NAME) if store is not None else None
    if type(body) is tuple and len(body) == 2 and type(body[0]) is dict and type(body[1]) is dict:
        return body[0], body[1]
    return {}, {}


def _valid_maildir_entry(entry: object) -> bool:
    return (
        type(entry) is tuple
        and len(entry) == 3
        and type(entry[0]) is tuple
        and type(entry[1]) is bytes
        and type(entry[2]) is tuple
        and len(entry[1]) == len(entry[0]) * _KEY.size
        and all(type(d) is str for d in entry[0])
        and all(type(d) is str for d in entry[2])
    )


def _users_of(rows: object) -> tuple[VirtualUser, ...] | None:
    """The entries of a cached table, or None when its shape is not exactly what
    `remember_users` writes (every field of the right type)."""
    if type(rows) is not tuple:
        return None
    if not rows:
        return ()
    if set(map(type, rows)) != {tuple} or set(map(len, rows)) != {len(USER_FIELDS)}:
        return None
    columns = list(zip(*rows, strict=True))
    for column, allowed in zip(columns, _COLUMN_TYPES, strict=True):
        if not set(map(type, column)) <= allowed:
            return None
    for index in _ADDRESS_COLUMNS:
        if not {type(item) for forwards in columns[index] for item in forwards} <= {str}:
            return None
    return tuple(map(_make_user, rows))
