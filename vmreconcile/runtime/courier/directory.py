"""Account lookups for the long-lived authpipe program, with files re-read only when they change.

The login core's `LoginSession` (`login.core`) is made for one login per process: it opens the
table, the control files and the options afresh each time and then drops privileges. authpipe
answers thousands of requests as root in one process and never changes user, so this module
keeps what it read and parsed, keyed by the file's ``lstat`` identity (device, inode, size,
mtime, ctime): a table rewritten by ``apply`` or VMailMgr (always a new inode through rename)
is noticed on the next request, an unchanged one costs one ``lstat``; option files,
``locals``, ``virtualdomains`` and a rooted ``etc/passwd`` are re-checked at most once a
second. Paths are plain strings on this hot path (pathlib costs more than the lookups). Every
file is opened without following a symlink in the last component; a symlinked table is
refused (a base user must not point root at other files), a symlinked option or control file
counts as missing.

The name mapping [compat: login-names] and the login rules [compat: checkvpw] are the login
core's: `split_login`, `lookup_baseuser` (given `Directory.base_user`, the cached account
lookup), `system_logins_enabled`; the only rule repeated here is the short "may this entry log
in" test, which the login core ties to its own uncached table read. Passwords are checked with
`formats.hashing.verify_password` (libxcrypt) rather than the login core's `verify`: its
pure-Python ``$1$`` path saves a one-shot login the ``ctypes`` import, but in this long-lived
process libcrypt is already loaded and three times faster (same ``crypt_cmp`` rules either way).
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping

from ...formats.cdb import CdbError, CdbReader
from ...formats.config import OPTIONS, parse_option
from ...formats.control import find_virtual, parse_lines, virtualdomains_map
from ...formats.hashcost import cost_problem
from ...formats.hashing import verify_password
from ...formats.vpwentry import RecordError, decode_record, user_key
from ...host import BaseUser, Host, parse_passwd
from ...model import VirtualUser, from_bytes
from ...tables import TableError, iter_users, open_table, read_regular, table_path
from ..login import core

Identity = tuple[int, int, int, int, int]

#: How many tables stay mapped at once (one per base user that logged in recently).
MAX_TABLES = 256
#: Seconds an option/control file's identity is trusted before it is lstat'ed again.
RECHECK = 1.0
#: Decoded records kept per table (the same users log in again and again), and the most record
#: bytes they may come from: a table of 64 KiB records (the most one may hold) must not turn the
#: memo into hundreds of MiB of decoded forwards.
MAX_DECODED = 4096
MAX_DECODED_BYTES = 4 << 20


class Refused(Exception):
    """The request is answered ``FAIL``; ``reason`` goes to the log (stderr), never the client."""

    def __init__(self, reason: str, temporary: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary


def identity(path: str) -> Identity | None:
    """``lstat`` identity of ``path``; None when it does not exist. A symlink raises TableError."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(info.st_mode):
        raise TableError(f"{path}: is a symbolic link; refusing to follow it")
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class Table:
    """A mapped table and the records decoded from it so far (valid while its identity holds)."""

    __slots__ = ("reader", "decoded", "decoded_bytes")

    def __init__(self, reader: CdbReader) -> None:
        self.reader = reader
        #: key -> the decoded entry, None (no such key) or the `RecordError` it raised
        self.decoded: dict[bytes, VirtualUser | RecordError | None] = {}
        self.decoded_bytes = 0

    def record(self, name: str) -> VirtualUser | None:
        """``lookup`` of tables.py, memoised: a name asked for again is not decoded again.

        A corrupt record raises its `RecordError` (remembered too); `CdbError` (a malformed
        table) is raised and not remembered: it costs a bounded probe, never a decoding.
        """
        key = user_key(name)
        try:
            known = self.decoded[key]
        except KeyError:
            data = self.reader.get(key)
            try:
                known = decode_record(key, data) if data is not None else None
            except RecordError as exc:
                known = exc
            size = len(data) if data is not None else 0
            if len(self.decoded) >= MAX_DECODED or self.decoded_bytes + size > MAX_DECODED_BYTES:
                self.decoded.clear()
                self.decoded_bytes = 0
            self.decoded[key] = known
            self.decoded_bytes += size
        if isinstance(known, RecordError):
            raise known.with_traceback(None)  # a fresh traceback each time: the kept one never grows
        return known

    def user(self, name: str) -> VirtualUser | None:
        """`record`, with a corrupt record read as "no such user"."""
        try:
            return self.record(name)
        except RecordError:
            return None


def may_log_in(user: VirtualUser | None, now: int) -> str | None:
    """Why the entry cannot log in, password aside [compat: checkvpw], or None."""
    if user is None or not user.has_mailbox or not user.directory:
        return core.MSG_UNKNOWN_VIRTUAL
    if user.expires is not None and user.expires < now:
        return core.MSG_EXPIRED
    return None


def _reached(name: str, prefix: str) -> bool:
    """True when a domain with virtual prefix ``prefix`` reaches the table key ``name``."""
    return len(name) > len(prefix) and name.startswith(prefix)


def _parse_locals(raw: bytes | None) -> frozenset[str]:
    """``locals`` lines with trailing whitespace cut: `is_local` is membership in this set [compat: control-files]."""
    return frozenset(line.rstrip() for line in parse_lines(raw)) if raw else frozenset()


def _parse_virtualdomains(raw: bytes | None) -> dict[str, str]:
    return virtualdomains_map(parse_lines(raw)) if raw else {}


class Directory:
    """Resolves logins to accounts for authpipe, caching files by their lstat identity."""

    def __init__(self, host: Host, environ: Mapping[str, str] | None = None) -> None:
        self.root = host.root
        self.host = host
        self.environ = dict(os.environ if environ is None else environ)
        self.config_dir = str(host.config_dir)
        self._parsed: dict[str, tuple[Identity | None, object, float]] = {}
        self.recheck = RECHECK
        self._tables: OrderedDict[str, tuple[Identity | None, Table | None]] = OrderedDict()
        self._paths: dict[str, str] = {}

    # files --------------------------------------------------------------------------

    def _cached(self, path: str, parse: Callable[[bytes | None], object]) -> object:
        """``parse(content or None)``, recomputed only when the file's identity changes.

        The identity is checked again at most every `RECHECK` seconds: options, control files
        and ``etc/passwd`` change rarely, and one ``lstat`` per file per request would be most
        of a request's cost. (Tables are checked on every request, see `table`.)
        """
        now = time.monotonic()
        cached = self._parsed.get(path)
        if cached is not None and now - cached[2] < self.recheck:
            return cached[1]
        try:
            ident = identity(path)
        except TableError:
            ident = None  # a symlinked option or control file counts as missing
        if cached is not None and cached[0] == ident:
            self._parsed[path] = (ident, cached[1], now)
            return cached[1]
        value = parse(read_regular(path, limit=1 << 20) if ident is not None else None)
        self._parsed[path] = (ident, value, now)
        return value

    def _mapped(self, absolute: str) -> str:
        """``host.path(absolute)`` as a string, memoised (pathlib is slow on the hot path)."""
        try:
            return self._paths[absolute]
        except KeyError:
            mapped = self._paths[absolute] = str(self.host.path(absolute))
            return mapped

    def option(self, name: str, base: BaseUser | None = None) -> object:
        """An option through ``~base/.vmailmgr`` (if given) and ``/etc/vmailmgr``, else its default."""
        option = OPTIONS[name]
        dirs = (self.home(base) + "/.vmailmgr", self.config_dir) if base is not None else (self.config_dir,)

        def parse(raw: bytes | None) -> object:
            return None if raw is None else parse_option(option.kind, raw)

        for directory in dirs:
            value = self._cached(f"{directory}/{name}", parse)
            if value is not None:
                return value
        return option.default

    def control_dir(self) -> str:
        return self._mapped(str(self.option("qmail-root")).rstrip("/") + "/control")

    def base_user(self, name: str) -> BaseUser | None:
        """A system account: ``pwd`` (NSS) unrooted, else ``ROOT/etc/passwd`` parsed once per change."""
        if self.root is None:
            return self.host.find_base_user(name)
        users = self._cached(self._mapped("/etc/passwd"), parse_passwd)
        return users.get(name)  # type: ignore[attr-defined]

    def home(self, base: BaseUser) -> str:
        return self._mapped(base.home) if base.home.startswith("/") else base.home

    def table_file(self, base: BaseUser) -> str:
        return table_path(self.home(base), str(self.option("password-file", base)))

    def table(self, base: BaseUser) -> Table | None:
        """The base user's table (None: no table yet). Unusable tables raise `Refused` (temporary)."""
        try:
            path = self.table_file(base)
        except TableError as exc:
            raise Refused(f"{core.MSG_TABLE_UNUSABLE}: {exc}", temporary=True) from None
        try:
            ident = identity(path)
            cached = self._tables.get(path)
            if cached is not None and cached[0] == ident:
                self._tables.move_to_end(path)
                return cached[1]
            reader = open_table(path, read_limit=0) if ident is not None else None  # mapped: kept open
            if reader is not None:
                reader.check_layout()  # once per change: a crafted layout is refused, never walked
        except (TableError, CdbError, OSError) as exc:
            self._tables.pop(path, None)
            raise Refused(f"{core.MSG_TABLE_UNUSABLE}: {exc}", temporary=True) from None
        table = Table(reader) if reader is not None else None
        self._tables[path] = (ident, table)
        while len(self._tables) > MAX_TABLES:
            self._tables.popitem(last=False)
        return table

    def forget_table(self, base: BaseUser) -> None:
        with contextlib.suppress(TableError):
            self._tables.pop(self.table_file(base), None)

    # logins -------------------------------------------------------------------------

    def resolve(self, login: str, environ: Mapping[str, str] | None = None) -> tuple[BaseUser, str]:
        """[compat: login-names]: split at a separator (or use $TCPLOCALHOST / the host name), locals,
        virtualdomains.

        ``environ`` replaces the program's environment for this one login (vauthd passes the
        address the client connected to as ``TCPLOCALHOST``).
        """
        if "\0" in login:  # no account name holds one, and getpwnam() would raise on it
            raise Refused(core.MSG_UNKNOWN_BASE)
        try:
            separators = str(self.option("separators"))
            user, domain = core.split_login(login, separators, self.environ if environ is None else environ)
        except core.LoginFailure as failure:
            raise Refused(failure.message, temporary=failure.code == core.EXIT_TEMPORARY) from None
        full = user
        control = self.control_dir()
        if domain not in self._cached(control + "/locals", _parse_locals):  # type: ignore[operator]
            mapping = self._cached(control + "/virtualdomains", _parse_virtualdomains)
            prefix = find_virtual(domain, mapping)  # type: ignore[arg-type]
            if prefix:
                full = prefix + "-" + user
        found = core.lookup_baseuser(full, self.base_user)
        if found is None:
            raise Refused(core.MSG_UNKNOWN_BASE)
        return found

    def _virtual(self, base: BaseUser, virtual: str) -> VirtualUser | None:
        """The entry of ``virtual``; a table a lookup finds corrupt is `Refused` (temporary)."""
        table = self.table(base)
        try:
            return table.user(virtual) if table is not None else None
        except CdbError as exc:  # e.g. a probe run longer than MAX_PROBES
            raise Refused(f"{core.MSG_TABLE_UNUSABLE}: {exc}", temporary=True) from None

    def find(self, login: str) -> core.Account:
        """The account for ``login`` with no password check (PRE): blocked entries refused."""
        base, virtual = self.resolve(login)
        if not virtual:
            if not core.system_logins_enabled(self.host):
                raise Refused(core.MSG_SYSTEM_LOGINS_DISABLED)
            return core.Account(base, "", None, self.home(base))
        user = self._virtual(base, virtual)
        problem = may_log_in(user, int(time.time()))
        if problem:
            raise Refused(problem)
        return core.Account(base, virtual, user, self.home(base))

    def authenticate(self, login: str, password: str) -> core.Account:
        """The account for ``login`` if ``password`` is right and the entry may log in [compat: checkvpw].

        Checked in VMailMgr's order: existence and mailbox, then the password, then expiry.
        """
        base, virtual = self.resolve(login)
        if not virtual:
            if not core.system_logins_enabled(self.host):
                raise Refused(core.MSG_SYSTEM_LOGINS_DISABLED)
            if not core.check_system_password(self.host, base.name, password):
                raise Refused(core.MSG_BAD_PASSWORD)
            return core.Account(base, "", None, self.home(base))
        user = self._virtual(base, virtual)
        if user is None or not user.has_mailbox or not user.directory:
            raise Refused(core.MSG_UNKNOWN_VIRTUAL)
        costly = cost_problem(user.password)
        if costly is not None:  # never computed: one login could cost minutes of CPU as root
            raise Refused(f"{core.MSG_HASH_TOO_COSTLY}: {costly}", temporary=True)
        if not verify_password(password, user.password):
            raise Refused(core.MSG_BAD_PASSWORD)
        problem = may_log_in(user, int(time.time()))
        if problem:
            raise Refused(problem)
        return core.Account(base, virtual, user, self.home(base))

    # enumeration --------------------------------------------------------------------

    def domains(self) -> list[tuple[str, BaseUser, str]]:
        """``(domain, base user, virtual prefix)`` for every concrete virtual domain.

        Wildcard keys (``.example.com``) name no login domain and are skipped, and so are
        domains in ``locals`` (locals wins). A virtualdomains value ``joe-pre`` gives
        base ``joe`` and prefix ``pre-``, resolved the way a login would be [compat: login-names].
        """
        control = self.control_dir()
        locals_set = self._cached(control + "/locals", _parse_locals)
        mapping = self._cached(control + "/virtualdomains", _parse_virtualdomains)
        out = []
        for domain, prefix in mapping.items():  # type: ignore[attr-defined]
            if not prefix or domain.startswith(".") or domain in locals_set:  # type: ignore[operator]
                continue
            found = core.lookup_baseuser(prefix + "-x", self.base_user)
            if found is None:
                continue
            base, virtual = found
            if virtual.endswith("x"):
                out.append((domain, base, from_bytes(user_key(virtual[:-1]))))
        return out

    def enumerate(self) -> Iterator[tuple[str, BaseUser, VirtualUser, str]]:
        """``(address, base, entry, home)`` for every user that can log in, once each.

        A user reachable through several domains (domain aliases) is listed under the first
        one in virtualdomains order. Aliases and expired entries cannot log in and are left out.
        Memory does not grow with the number of users (vauthd lists 100,000 in one go): a user
        is skipped when an earlier domain of the same base user already reached it.
        """
        for entry in self.listing():
            if entry is not None:
                yield entry

    def listing(self, pause_every: int = 0) -> Iterator[tuple[str, BaseUser, VirtualUser, str] | None]:
        """`enumerate`, with None after every ``pause_every`` records looked at (0: never).

        Why the pauses: a table of a million aliases lists no one but takes seconds to walk;
        a caller serving other clients in the same thread (vauthd) uses each None to serve
        them before it asks for more, so the walk never holds them up for longer than one
        stretch of ``pause_every`` records, however few rows it produces.
        """
        now = int(time.time())
        looked_at = 0
        listed: list[tuple[str, str]] = []  # (base user, prefix) of the domains listed so far
        for domain, base, prefix in self.domains():
            earlier = [other for name, other in listed if name == base.name]
            listed.append((base.name, prefix))
            if prefix in earlier:  # a domain alias: every user it reaches is listed already
                continue
            try:
                table = self.table(base)
            except Refused:
                continue
            if table is None:
                continue
            home = self.home(base)
            try:
                for user in iter_users(table.reader):
                    looked_at += 1
                    if looked_at == pause_every:
                        looked_at = 0
                        yield None
                    if not _reached(user.name, prefix) or any(_reached(user.name, other) for other in earlier):
                        continue
                    if may_log_in(user, now):
                        continue
                    yield f"{user.name[len(prefix) :]}@{domain}", base, user, home
            except (RecordError, CdbError):
                continue
