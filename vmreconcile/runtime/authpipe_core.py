"""Account lookups for the long-lived authpipe program, with files re-read only when they change.

authcore's `LoginSession` is made for one login per process: it opens the table, the control
files and the options afresh each time and then drops privileges. authpipe answers thousands
of requests as root in one process and never changes user, so this module keeps what it read,
keyed by the file's ``lstat`` identity (device, inode, size, mtime, ctime): a table rewritten
by ``apply`` or VMailMgr (always a new inode through rename) is noticed on the next request, an
unchanged one costs a single ``lstat``. Every file is opened without following a symlink in the
last component; a symlinked table is refused (a base user must not point root at other files).

The name mapping (§4) and the login rules (§5.6) are authcore's: `split_login`,
`lookup_baseuser`, `verify`, `system_logins_enabled`; the only rule repeated here is the short
"may this entry log in" test, which authcore ties to its own uncached table read.
"""

from __future__ import annotations

import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from ..formats.cdb import CdbError, CdbReader
from ..formats.config import ConfigChain
from ..formats.control import find_virtual, is_local, parse_lines, virtualdomains_map
from ..formats.vpwentry import RecordError, user_key
from ..host import BaseUser, Host
from ..model import VirtualUser, from_bytes
from ..tables import TableError, iter_users, lookup, open_table, table_path
from . import authcore

T = TypeVar("T")
Identity = tuple[int, int, int, int, int]

#: How many tables stay mapped at once (one per base user that logged in recently).
MAX_TABLES = 256


class Refused(Exception):
    """The request is answered ``FAIL``; ``reason`` goes to the log (stderr), never the client."""

    def __init__(self, reason: str, temporary: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary


def identity(path: Path) -> Identity | None:
    """``lstat`` identity of ``path``; None when it does not exist. A symlink raises TableError."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise TableError(f"{path}: is a symbolic link; refusing to follow it")
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def read_nofollow(path: Path, limit: int = 1 << 20) -> bytes | None:
    """A small file's bytes, opened with ``O_NOFOLLOW``; None if it cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        while limit > 0:
            chunk = os.read(fd, min(limit, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            limit -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


class StatCache(Generic[T]):
    """``path -> loader(path)``, reloaded when the path's lstat identity changes."""

    def __init__(self, loader: Callable[[Path], T], limit: int = 1024) -> None:
        self.loader = loader
        self.limit = limit
        self.entries: OrderedDict[Path, tuple[Identity | None, T]] = OrderedDict()

    def get(self, path: Path) -> T:
        try:
            ident = identity(path)
        except TableError:
            self.entries.pop(path, None)
            raise
        cached = self.entries.get(path)
        if cached is not None and cached[0] == ident:
            self.entries.move_to_end(path)
            return cached[1]
        value = self.loader(path)
        self.entries[path] = (ident, value)
        self.entries.move_to_end(path)
        while len(self.entries) > self.limit:
            self.entries.popitem(last=False)
        return value

    def forget(self, path: Path) -> None:
        self.entries.pop(path, None)


@dataclass(frozen=True, slots=True)
class Found:
    """A resolved login: base user, virtual name as typed (empty: system account), its entry."""

    base: BaseUser
    virtual_name: str
    user: VirtualUser | None
    home: Path


def may_log_in(user: VirtualUser | None, now: int) -> str | None:
    """Why the entry cannot log in, password aside (§5.6), or None."""
    if user is None or not user.has_mailbox or not user.directory:
        return authcore.MSG_UNKNOWN_VIRTUAL
    if user.expires is not None and user.expires < now:
        return authcore.MSG_EXPIRED
    return None


class Directory:
    """Resolves logins to accounts for authpipe, caching files by their lstat identity."""

    def __init__(self, host: Host, environ: Mapping[str, str] | None = None) -> None:
        self.root = host.root
        self.host = host
        self.environ = dict(os.environ if environ is None else environ)
        self.files: StatCache[bytes | None] = StatCache(read_nofollow)
        self.tables: StatCache[CdbReader | None] = StatCache(open_table, MAX_TABLES)
        self._passwd_identity: Identity | None = None

    # files --------------------------------------------------------------------------

    def _read(self, path: Path) -> bytes | None:
        try:
            return self.files.get(path)
        except TableError:
            return None

    def refresh_host(self) -> None:
        """A rooted Host reads ``ROOT/etc/passwd`` once; start a new one when it changed."""
        if self.root is None:
            return
        try:
            ident = identity(self.host.path("/etc/passwd"))
        except TableError:
            ident = None
        if ident != self._passwd_identity:
            self._passwd_identity = ident
            self.host = Host(self.root)

    def global_config(self) -> ConfigChain:
        return ConfigChain([self.host.config_dir], read=self._read)

    def domain_config(self, base: BaseUser) -> ConfigChain:
        return ConfigChain([self.host.home(base) / ".vmailmgr", self.host.config_dir], read=self._read)

    def control(self, config: ConfigChain, name: str) -> tuple[str, ...]:
        raw = self._read(self.host.path(config.text("qmail-root")) / "control" / name)
        return parse_lines(raw) if raw else ()

    def table_file(self, base: BaseUser) -> Path:
        return table_path(self.host.home(base), self.domain_config(base).text("password-file"))

    def table(self, base: BaseUser) -> CdbReader | None:
        """The base user's table (None: no table yet). Unusable tables raise `Refused` (temporary)."""
        try:
            return self.tables.get(self.table_file(base))
        except (TableError, CdbError, OSError) as exc:
            raise Refused(f"{authcore.MSG_TABLE_UNUSABLE}: {exc}", temporary=True) from None

    # logins -------------------------------------------------------------------------

    def resolve(self, login: str) -> tuple[BaseUser, str]:
        """§4: split at a separator (or use $TCPLOCALHOST / the host name), locals, virtualdomains."""
        self.refresh_host()
        config = self.global_config()
        try:
            user, domain = authcore.split_login(login, config.text("separators"), self.environ)
        except authcore.LoginFailure as failure:
            raise Refused(failure.message, temporary=failure.code == authcore.EXIT_TEMPORARY) from None
        full = user
        if not is_local(domain, self.control(config, "locals")):
            prefix = find_virtual(domain, virtualdomains_map(self.control(config, "virtualdomains")))
            if prefix:
                full = prefix + "-" + user
        found = authcore.lookup_baseuser(full, self.host)
        if found is None:
            raise Refused(authcore.MSG_UNKNOWN_BASE)
        return found

    def find(self, login: str) -> Found:
        """The account for ``login`` with no password check (PRE): blocked entries refused."""
        base, virtual = self.resolve(login)
        home = self.host.home(base)
        if not virtual:
            if not authcore.system_logins_enabled(self.host):
                raise Refused(authcore.MSG_SYSTEM_LOGINS_DISABLED)
            return Found(base, "", None, home)
        reader = self.table(base)
        try:
            user = lookup(reader, virtual) if reader is not None else None
        except RecordError:
            user = None
        problem = may_log_in(user, int(time.time()))
        if problem:
            raise Refused(problem)
        return Found(base, virtual, user, home)

    def authenticate(self, login: str, password: str) -> Found:
        """The account for ``login`` if ``password`` is right and the entry may log in (§5.6)."""
        base, virtual = self.resolve(login)
        home = self.host.home(base)
        if not virtual:
            if not authcore.system_logins_enabled(self.host):
                raise Refused(authcore.MSG_SYSTEM_LOGINS_DISABLED)
            if not authcore.check_system_password(self.host, base.name, password):
                raise Refused(authcore.MSG_BAD_PASSWORD)
            return Found(base, "", None, home)
        reader = self.table(base)
        try:
            user = lookup(reader, virtual) if reader is not None else None
        except RecordError:
            user = None
        if user is None or not user.has_mailbox or not user.directory:
            raise Refused(authcore.MSG_UNKNOWN_VIRTUAL)
        if not authcore.verify(password, user.password):
            raise Refused(authcore.MSG_BAD_PASSWORD)
        problem = may_log_in(user, int(time.time()))
        if problem:
            raise Refused(problem)
        return Found(base, virtual, user, home)

    # enumeration --------------------------------------------------------------------

    def domains(self) -> list[tuple[str, BaseUser, str]]:
        """``(domain, base user, virtual prefix)`` for every concrete virtual domain.

        Wildcard keys (``.example.com``) name no login domain and are skipped, and so are
        domains in ``locals`` (locals wins, §4.4). A virtualdomains value ``joe-pre`` gives
        base ``joe`` and prefix ``pre-``, resolved the way a login would be (§4.5).
        """
        self.refresh_host()
        config = self.global_config()
        locals_lines = self.control(config, "locals")
        out = []
        for domain, prefix in virtualdomains_map(self.control(config, "virtualdomains")).items():
            if not prefix or domain.startswith(".") or is_local(domain, locals_lines):
                continue
            found = authcore.lookup_baseuser(prefix + "-x", self.host)
            if found is None:
                continue
            base, virtual = found
            if virtual.endswith("x"):
                out.append((domain, base, from_bytes(user_key(virtual[:-1]))))
        return out

    def enumerate(self) -> Iterator[tuple[str, BaseUser, VirtualUser, Path]]:
        """``(address, base, entry, home)`` for every user that can log in, once each.

        A user reachable through several domains (domain aliases) is listed under the first
        one in virtualdomains order. Aliases and expired entries cannot log in and are left out.
        """
        now = int(time.time())
        seen: set[tuple[str, str]] = set()
        for domain, base, prefix in self.domains():
            try:
                reader = self.table(base)
            except Refused:
                continue
            if reader is None:
                continue
            home = self.host.home(base)
            try:
                for user in iter_users(reader):
                    if len(user.name) <= len(prefix) or not user.name.startswith(prefix):
                        continue
                    if (base.name, user.name) in seen:
                        continue
                    if may_log_in(user, now):
                        continue
                    seen.add((base.name, user.name))
                    yield f"{user.name[len(prefix):]}@{domain}", base, user, home
            except (RecordError, CdbError):
                continue
