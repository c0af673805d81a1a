"""Read what is deployed on a host into one immutable `HostState`.

Sources (all through `Host`, so ``--root`` moves every one of them): the global option files in
``/etc/vmailmgr``, the qmail control files, and for each base user named in
``control/virtualdomains``: ``~/.vmailmgr/<option>``, ``~/.qmail-default``, the table
(``<password-file>.cdb``) and which user directories exist as maildirs.

Domains are grouped per base user, because VMailMgr keeps one table per base user: every
virtualdomains key that maps to the same user is one `Domain` (the first plain key is its name,
``.name`` makes it a wildcard, the other keys are domain aliases).

A base user's home is the tenant's: root reads it here, so every file in it is read bounded
(`tables.read_bounded`: non-blocking, regular files only, no symlinks, a size cap, no hard
links where another file's content could be read), the table is checked against its header
and layout before a record is read, and whatever is wrong is a `DomainReadError` that names the
domain and the file. Callers that plan many domains catch it per domain
(`read_live_state(on_error=...)`), so one broken tenant does not hide the others.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from .cache.livestate import LiveCache
from .formats.cdb import CdbError, CdbReader
from .formats.config import OPTIONS, layered_value, password_file_problem, stored_value
from .formats.control import CONTROL_FILES, VIRTUALDOMAINS, owned_virtualdomain, parse_lines
from .formats.vpwentry import RecordError, decode_record
from .gcpause import collector_paused
from .host import GLOBAL_CONFIG_DIR, LOCAL_CONFIG_DIR, BaseUser, BaseUserMissing, Host
from .model import Domain, HostState, OptionValue, VirtualUser, from_bytes
from .tables import TableError, UnsafeFile, open_table_fd, read_bounded, table_path, table_reader

#: Caps on what is read from a tenant's home (docs/plan-apply.md lists them). An option file is
#: one short line or a short list; ``.qmail-default`` a few delivery lines; a table of 64 MiB
#: holds some 600,000 entries.
OPTION_FILE_LIMIT = 4096
QMAIL_DEFAULT_LIMIT = 64 * 1024
TABLE_LIMIT = 64 * 1024 * 1024
#: Root-owned qmail control files: large fleets list many names, but never this many.
CONTROL_FILE_LIMIT = 64 * 1024 * 1024
#: What `Domain.qmail_default` holds for a hard-linked ``.qmail-default``: its content is not read
#: (it may be another file), so it never equals the wanted content and apply replaces the file.
UNREAD_QMAIL_DEFAULT = "(not read: the file has more than one hard link)"


class DomainReadError(ValueError):
    """One domain's live files cannot be used; the message names the domain and the file."""

    def __init__(self, domain: str, base_user: str, message: str, errno: int | None = None) -> None:
        self.domain = domain
        self.base_user = base_user
        self.message = message
        #: the system error behind it, and the file it names (every message starts with the
        #: path): callers turn a permission error into "this needs root" (`cli.privilege`)
        self.errno = errno
        self.path = message.split(": ", 1)[0] if message.startswith("/") else None
        super().__init__(f"domain {domain} (base user {base_user}): {message}")


#: What reading one domain can raise before it is wrapped into a `DomainReadError`.
_DOMAIN_FAILURES = (BaseUserMissing, UnsafeFile, TableError, CdbError, RecordError, OSError)

OnError = Callable[[DomainReadError], None]
Skip = Callable[[str, str], bool]
#: ``progress(done, total)`` while the domains are read (a fleet plan shows it on a terminal).
Progress = Callable[[int, int], None]


def read_live_state(
    host: Host,
    *,
    on_error: OnError | None = None,
    skip: Skip | None = None,
    cache: LiveCache | None = None,
    progress: Progress | None = None,
) -> HostState:
    """The whole live model.

    Without ``on_error`` the first unusable domain raises `DomainReadError`; with it, each one
    is handed to ``on_error`` and left out. ``skip(name, base_user)`` leaves a domain unread
    (plan skips the domains its preflight already refused). ``cache`` (plan's, see
    `cache.livestate`) spares decoding tables and checking maildirs that did not change.
    """
    control = read_control_files(host)
    global_options = read_global_options(host)
    groups = group_virtualdomains(control.get(VIRTUALDOMAINS, ()))
    domains = read_domains(host, groups, global_options, on_error=on_error, skip=skip, cache=cache, progress=progress)
    return HostState(options=global_options, control=control, domains=tuple(domains))


def read_live_reporting(host: Host, domain: str | None = None) -> tuple[HostState, list[DomainReadError]]:
    """The live model for ``show`` and ``export``: every domain that can be read (only
    ``domain`` when given), and a `DomainReadError` for each that cannot. One tenant's broken
    home must not hide the others, nor stop ``--domain`` of a healthy domain."""
    errors: list[DomainReadError] = []
    skip = None if domain is None else (lambda name, _base_user: name != domain)
    return read_live_state(host, on_error=errors.append, skip=skip), errors


def live_domain_names(state: HostState) -> list[str]:
    """The names of the domains ``virtualdomains`` routes, read or not (``--domain`` reads one)."""
    groups = group_virtualdomains(state.control.get(VIRTUALDOMAINS, ()))
    return [split_domain_keys(keys)[0] for _base_user, keys in groups]


def read_domains(
    host: Host,
    groups: list[tuple[str, list[str]]],
    global_options: Mapping[str, OptionValue],
    *,
    on_error: OnError | None = None,
    skip: Skip | None = None,
    cache: LiveCache | None = None,
    progress: Progress | None = None,
) -> list[Domain]:
    """The domains of ``groups`` (`group_virtualdomains`), each read by `read_domain`."""
    domains = []
    with collector_paused():  # 100,000 entries are built: no reference cycles to look for
        for done, (base_user, keys) in enumerate(groups):
            if progress is not None:
                progress(done, len(groups))
            name = split_domain_keys(keys)[0]
            if skip is not None and skip(name, base_user):
                continue
            try:
                domains.append(read_domain(host, base_user, keys, global_options, cache))
            except DomainReadError as exc:
                if on_error is None:
                    raise
                on_error(exc)
    if progress is not None:
        progress(len(groups), len(groups))
    return domains


def read_control_files(host: Host) -> dict[str, tuple[str, ...]]:
    """The control files that exist (root-owned: an admin's symlink there is followed).

    Anything there that is not a readable regular file of sane size is an `UnsafeFile` naming
    it: a FIFO must not hang plan, and a missing file must not be confused with an unusable one.
    """
    control = {}
    for name in CONTROL_FILES:
        raw = read_bounded(host.control_path_str(name), limit=CONTROL_FILE_LIMIT, follow_symlinks=True)
        if raw is not None:
            control[name] = parse_lines(raw)
    return control


def group_virtualdomains(lines: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """(base user, [keys in file order]) in order of first appearance; later duplicates win ([compat: control-files]).

    Comment lines (``#`` first) are not domains: they are kept as they are and never read as
    a key, although VMailMgr itself would read one with a ``:`` as a (never matching) key.
    """
    mapping: dict[str, str] = {}
    for line in lines:
        pair = owned_virtualdomain(line)
        if pair is not None and pair[1]:
            mapping.pop(pair[0], None)
            mapping[pair[0]] = pair[1]
    groups: dict[str, list[str]] = {}
    for line in lines:  # file order of the surviving keys
        pair = owned_virtualdomain(line)
        if pair is not None and mapping.get(pair[0]) == pair[1] and pair[0] not in groups.get(pair[1], []):
            groups.setdefault(pair[1], []).append(pair[0])
    return list(groups.items())


def split_domain_keys(keys: list[str]) -> tuple[str, bool, tuple[str, ...]]:
    """(name, wildcard, domain_aliases) from one base user's virtualdomains keys."""
    plain = [k for k in keys if not k.startswith(".")]
    name = plain[0] if plain else keys[0].lstrip(".")
    wildcard = "." + name in keys
    aliases = tuple(k for k in keys if k not in (name, "." + name))
    return name, wildcard, aliases


def read_global_options(host: Host) -> dict[str, OptionValue]:
    """``/etc/vmailmgr``'s option files (root's directory: symlinks there are followed)."""
    return read_options(host.config_dir, host.config_dir)


def read_options(directory: Path, host_config_dir: Path | None = None) -> dict[str, OptionValue]:
    """The option files present in ``directory`` (only VMailMgr's 22 names; hooks are ignored).

    Symlinks are followed only in the root-owned global directory (``host_config_dir``); each
    file is read bounded and an unusable one is an `UnsafeFile` naming it.
    """
    follow = directory == host_config_dir
    options: dict[str, OptionValue] = {}
    for name, option in OPTIONS.items():
        raw = read_bounded(
            directory / name, limit=OPTION_FILE_LIMIT, follow_symlinks=follow, max_links=None if follow else 1
        )
        if raw is not None:
            options[name] = stored_value(raw, option.kind)
    return options


def read_home_options(home_fd: int, where: str) -> dict[str, OptionValue]:
    """``~/.vmailmgr``'s option files, opened below the home's descriptor without following
    anything: a symlinked ``.vmailmgr`` or option file is refused (`UnsafeFile`), as are FIFOs,
    hard links and files over `OPTION_FILE_LIMIT`."""
    try:
        dir_fd = os.open(LOCAL_CONFIG_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=home_fd)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UnsafeFile(exc.errno, f"{where}: {_unusable_dir(exc)}") from None
    try:
        options: dict[str, OptionValue] = {}
        for name, option in OPTIONS.items():
            raw = read_bounded(name, dir_fd=dir_fd, limit=OPTION_FILE_LIMIT, max_links=1, where=f"{where}/{name}")
            if raw is not None:
                options[name] = stored_value(raw, option.kind)
        return options
    finally:
        os.close(dir_fd)


def _unusable_dir(exc: OSError) -> str:
    import errno

    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return "is a symbolic link or not a directory; refusing to follow it"
    return exc.strerror or str(exc)


def open_home(host: Host, base_user: BaseUser) -> int:
    """A descriptor of the base user's home (the passwd entry's path may go through symlinks
    the administrator made, such as ``/home`` -> ``/srv/home``)."""
    home = host.home_str(base_user)
    try:
        return os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UnsafeFile(2, f"{home}: the home of base user {base_user.name} does not exist") from None
    except OSError as exc:
        raise UnsafeFile(exc.errno, f"{home}: {exc.strerror}") from None


def read_domain(
    host: Host,
    base_user_name: str,
    keys: list[str],
    global_options: Mapping[str, OptionValue] | None = None,
    cache: LiveCache | None = None,
) -> Domain:
    """One domain's live files; `DomainReadError` naming the domain and the file when unusable."""
    name, wildcard, aliases = split_domain_keys(keys)
    try:
        return _read_domain(host, base_user_name, name, wildcard, aliases, global_options, cache)
    except _DOMAIN_FAILURES as exc:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror and not exc.filename else str(exc)
        code = exc.errno if isinstance(exc, OSError) else None
        raise DomainReadError(name, base_user_name, message, code) from None


def _read_domain(
    host: Host,
    base_user_name: str,
    name: str,
    wildcard: bool,
    aliases: tuple[str, ...],
    global_options: Mapping[str, OptionValue] | None,
    cache: LiveCache | None = None,
) -> Domain:
    base_user = host.base_user(base_user_name)
    home = host.home_str(base_user)
    if global_options is None:
        global_options = read_global_options(host)
    home_fd = open_home(host, base_user)
    try:
        options = read_home_options(home_fd, f"{home}/{LOCAL_CONFIG_DIR}")
        raw_default = read_bounded(
            ".qmail-default", dir_fd=home_fd, limit=QMAIL_DEFAULT_LIMIT, where=f"{home}/.qmail-default"
        )
        linked = _link_count(home_fd, ".qmail-default") > 1
    finally:
        os.close(home_fd)
    password_file = str(layered_value("password-file", options, global_options))
    problem = password_file_problem(password_file)
    if problem is not None:
        where = f"{home}/{LOCAL_CONFIG_DIR}" if "password-file" in options else GLOBAL_CONFIG_DIR
        raise TableError(f"{where}/password-file: {problem}")
    table = table_path(home, password_file)
    users = read_table(table, cache)
    if cache is not None:
        cache.read_domain(name, table, home)
    qmail_default = None if raw_default is None else UNREAD_QMAIL_DEFAULT if linked else from_bytes(raw_default)
    return Domain(
        name=name,
        base_user=base_user.name,
        wildcard=wildcard,
        domain_aliases=aliases,
        options=options,
        qmail_default=qmail_default,
        users=users,
        maildirs=existing_maildirs(host, base_user, users, cache),
    )


def _link_count(dir_fd: int, name: str) -> int:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_nlink
    except OSError:
        return 0


def read_table(path: str, cache: LiveCache | None = None) -> tuple[VirtualUser, ...]:
    """Every entry of the table at ``path`` (none if it does not exist), checked as a whole.

    Bounded (`TABLE_LIMIT`), one link only, layout checked before any record is read, and the
    number of records must be what the hash tables say; every error names the table. With a
    ``cache``, the table is still opened, checked and read as without one; only its decoding
    is skipped when its ``fstat`` and the sha256 of the bytes read match a cached decoding
    (the bytes, not only the times: a write through a shared mapping of a page already dirty
    changes neither the modification nor the change time).
    """
    opened = open_table_fd(path, max_size=TABLE_LIMIT, max_links=1)
    if opened is None:
        if cache is not None:
            cache.no_table(path)
        return ()
    fd, info = opened
    try:
        reader = table_reader(fd, info, path, check_layout=True)
    finally:
        os.close(fd)
    if cache is None:
        return _decode_table(path, reader)
    digest = hashlib.sha256(reader.data).digest()
    cached = cache.users(path, info, digest)
    if cached is not None:
        return cached
    users = _decode_table(path, reader)
    cache.remember_users(path, info, digest, users)
    return users


def _decode_table(path: str, reader: CdbReader) -> tuple[VirtualUser, ...]:
    users = []
    try:
        for key, data in reader.items():
            users.append(decode_record(key, data))
    except (CdbError, RecordError) as exc:
        raise TableError(f"{path}: {exc}") from None
    if len(users) != reader.record_count:
        raise TableError(f"{path}: corrupt cdb: {len(users)} records, the hash tables index {reader.record_count}")
    return tuple(users)


def existing_maildirs(host: Host, base_user: BaseUser, users: tuple, cache: LiveCache | None = None) -> frozenset[str]:
    """The stored directories of ``users`` that are maildirs (string paths: 100,000 users).

    With a ``cache``, one ``lstat`` of a directory that matches a cached check stands for the
    three more of ``cur``, ``new`` and ``tmp`` (`cache.livestate` says why that is sound).
    """
    home = host.home_str(base_user)
    directories = tuple(dict.fromkeys(u.directory for u in users if u.directory))
    prefix = home + "/"
    paths = [host.fspath(d) if d.startswith("/") else prefix + d for d in directories]
    if cache is not None:
        return frozenset(cache.maildirs(home, directories, paths, _is_maildir_at))
    return frozenset(d for d, path in zip(directories, paths, strict=True) if _is_maildir_at(path))


def _is_maildir_at(path: str) -> bool:
    lstat, isdir = os.lstat, stat.S_ISDIR
    try:
        return all(isdir(lstat(p).st_mode) for p in (path, path + "/cur", path + "/new", path + "/tmp"))
    except OSError:
        return False
