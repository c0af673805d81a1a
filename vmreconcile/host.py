"""The host: every path and every base-user lookup goes through one `Host`.

With ``--root DIR`` the whole filesystem view is moved under DIR: ``/etc/vmailmgr``, the qmail
root, the lock file, and base users, which are then read from ``DIR/etc/passwd`` (never from
the system). Without it, the real paths and ``pwd`` are used. Standard library only: the
runtime launchers bake a root in and use this same class.
"""

from __future__ import annotations

import os
import pwd
import stat

from .formats.config import ConfigChain
from .model import Record
from .tables import read_regular

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

GLOBAL_CONFIG_DIR = "/etc/vmailmgr"
LOCAL_CONFIG_DIR = ".vmailmgr"
#: In a root-only directory: /run/lock is world-writable, and anybody could hold a lock there.
LOCK_FILE = "/run/vmreconcile/apply.lock"
#: Apply history (root-only, 0700): the previous bytes of every file an apply replaced.
HISTORY_DIR = "/var/lib/vmreconcile/history"
#: Plan's cache of decoded live files and checked configuration parts (root-only, 0700; safe to delete).
CACHE_DIR = "/var/cache/vmreconcile"
#: The syslog socket the audit line goes to (journald's on Debian).
SYSLOG_SOCKET = "/dev/log"


def _Path(text: str) -> Path:
    """``pathlib.Path`` imported on first use: the runtime works on ``str`` paths only, because
    importing pathlib (re, fnmatch, urllib.parse, ...) would double a login's start-up time."""
    from pathlib import Path

    return Path(text)


class BaseUserMissing(LookupError):
    """A domain names a base user the host does not have (vmreconcile never creates one)."""

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        super().__init__(f"base user {name!r} does not exist in {where}; create the system account first")


class BaseUser(Record):
    """A system account that owns a domain. ``home`` is the path as the passwd file says."""

    __slots__ = ("name", "uid", "gid", "home")
    _fields = __slots__
    name: str
    uid: int
    gid: int
    home: str


class Host:
    """Maps absolute paths under an optional root and looks up base users there.

    Each path method has a ``str`` twin (``fspath``, ``home_str``, ...) for the runtime; the
    ``Path`` versions are for the management side.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root_str: str | None = os.path.realpath(os.fspath(root)) if root is not None else None
        self._users: dict[str, BaseUser] | None = None
        self._qmail_root: str | None = None

    def using_qmail_root(self, qmail_root: str | None) -> Host:
        """This host with the qmail root fixed to ``qmail_root`` (the configuration's, when it
        names one) instead of the one ``/etc/vmailmgr/qmail-root`` says right now."""
        if qmail_root is None:
            return self
        other = Host.__new__(Host)
        other.root_str, other._users, other._qmail_root = self.root_str, self._users, qmail_root
        return other

    @property
    def root(self) -> Path | None:
        return _Path(self.root_str) if self.root_str is not None else None

    @property
    def is_rooted(self) -> bool:
        """True under ``--root``: reload commands are printed instead of run."""
        return self.root_str is not None

    @property
    def can_chown(self) -> bool:
        """Ownership is set only when running as root (with or without ``--root``)."""
        return os.geteuid() == 0

    def fspath(self, absolute: str | os.PathLike[str]) -> str:
        """The real location of ``absolute`` (a path as the mail system knows it), as a string.

        Like ``PurePosixPath``: repeated and trailing slashes and ``.`` components are dropped;
        ``..`` is kept (it is not resolved, so it cannot be used to step out of a prefix check).
        """
        text = os.fspath(absolute)
        if not text.startswith("/"):
            raise ValueError(f"{text} is not an absolute path")
        parts = [p for p in text.split("/") if p and p != "."]
        if self.root_str is None:
            return "/" + "/".join(parts)
        return "/".join([self.root_str.rstrip("/"), *parts]) if parts else self.root_str

    def path(self, absolute: str | os.PathLike[str]) -> Path:
        """`fspath` as a ``pathlib.Path``."""
        return _Path(self.fspath(absolute))

    @property
    def config_dir_str(self) -> str:
        return self.fspath(GLOBAL_CONFIG_DIR)

    @property
    def config_dir(self) -> Path:
        return _Path(self.config_dir_str)

    @property
    def lock_path(self) -> Path:
        return self.path(LOCK_FILE)

    @property
    def history_dir(self) -> Path:
        return self.path(HISTORY_DIR)

    @property
    def cache_dir_str(self) -> str:
        return self.fspath(CACHE_DIR)

    @property
    def syslog_socket(self) -> Path:
        return self.path(SYSLOG_SOCKET)

    def global_config(self) -> ConfigChain:
        return ConfigChain([self.config_dir_str], read_option_file)

    def domain_config(self, user: BaseUser) -> ConfigChain:
        """Local ``~base/.vmailmgr`` first, then ``/etc/vmailmgr`` [compat: options].

        The local directory belongs to the base user and root reads it (plan, authpipe): its
        files are read without following symlinks, and a symlinked ``.vmailmgr`` is ignored.
        """
        local = os.path.join(self.home_str(user), LOCAL_CONFIG_DIR)
        global_dir = self.config_dir_str
        try:
            local_ok = stat.S_ISDIR(os.lstat(local).st_mode)
        except OSError:
            local_ok = False
        if not local_ok:
            return ConfigChain([global_dir], read_option_file)
        prefix = local + "/"

        def read(path: str) -> bytes | None:
            return read_option_file(path, follow_symlinks=not str(path).startswith(prefix))

        return ConfigChain([local, global_dir], read)

    def qmail_root_str(self) -> str:
        """``qmail-root`` from the global config (unless fixed by `using_qmail_root`), mapped under the root."""
        return self.fspath(self._qmail_root or self.global_config().text("qmail-root"))

    def qmail_root(self) -> Path:
        return _Path(self.qmail_root_str())

    def control_path_str(self, name: str) -> str:
        return os.path.join(self.qmail_root_str(), "control", name)

    def control_path(self, name: str) -> Path:
        return _Path(self.control_path_str(name))

    def home_str(self, user: BaseUser) -> str:
        return self.fspath(user.home)

    def home(self, user: BaseUser) -> Path:
        return _Path(self.home_str(user))

    def base_user(self, name: str) -> BaseUser:
        """Look up a base user; `BaseUserMissing` if there is none."""
        if self.root_str is None:
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                raise BaseUserMissing(name, "the system password database") from None
            return BaseUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)
        users = self._rooted_users()
        if name not in users:
            raise BaseUserMissing(name, self.fspath("/etc/passwd"))
        return users[name]

    def find_base_user(self, name: str) -> BaseUser | None:
        try:
            return self.base_user(name)
        except BaseUserMissing:
            return None

    def _rooted_users(self) -> dict[str, BaseUser]:
        if self._users is None:
            try:
                with open(self.fspath("/etc/passwd"), "rb") as fp:
                    raw = fp.read()
            except OSError:
                raw = b""
            self._users = parse_passwd(raw)
        return self._users


#: An option file is one short line (or a short list): more is never read.
OPTION_FILE_LIMIT = 65536


def read_option_file(path: str, follow_symlinks: bool = True) -> bytes | None:
    """An option file's bytes, None when missing or not a regular file (non-blocking, capped):
    a FIFO planted in a base user's ``.vmailmgr`` cannot hang a root process. Symlinks are
    followed only in root-owned directories (``follow_symlinks=False`` for files in homes)."""
    return read_regular(path, follow_symlinks=follow_symlinks, limit=OPTION_FILE_LIMIT)


def parse_passwd(raw: bytes | None) -> dict[str, BaseUser]:
    """A rooted host's ``etc/passwd``: name -> `BaseUser`; malformed lines are skipped and the
    first entry of a name wins (as ``getpwnam`` would find it)."""
    users: dict[str, BaseUser] = {}
    for line in (raw or b"").decode("utf-8", "surrogateescape").splitlines():
        parts = line.split(":")
        if len(parts) < 7 or not parts[2].isdigit() or not parts[3].isdigit():
            continue
        users.setdefault(parts[0], BaseUser(parts[0], int(parts[2]), int(parts[3]), parts[5]))
    return users


#: How many symbolic links one path may pass through (Linux's own limit).
MAX_SYMLINKS = 40


def untrusted_directory(
    path: str, trusted: set[int] | frozenset[int], skip_above: str | None = None, sticky_entries: bool = True
) -> str | None:
    """Why ``path`` can be redirected by someone not in ``trusted`` (uids), or None.

    The one walk for every "may root rely on this directory" question (preflight's control
    directories, vauthd's socket directory). The path is resolved one component at a time, as
    the kernel would, following a symbolic link only after the directory holding it was judged
    (so nobody else can have swapped it); every directory looked into must be owned by a
    trusted uid and not writable by group or others, and so must ``path`` itself. With
    ``sticky_entries`` a sticky directory (``/tmp``) passes when the entry looked up in it is
    owned by a trusted uid (nobody else can rename or replace that entry now); without it a
    sticky directory is refused like any other: its entry may vanish (a tmp cleaner, a reboot)
    and be recreated by anyone. A missing component ends the walk with None (the caller decides
    about missing paths). Directories strictly above ``skip_above`` are not judged.
    """
    pending = [p for p in path.split("/") if p and p != "."]
    current = "/"
    links = 0
    while pending:
        name = pending.pop(0)
        if name == "..":
            current = os.path.dirname(current)
            continue
        entry = os.path.join(current, name)
        try:
            info = os.lstat(entry)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"{entry}: {exc.strerror}"
        owner = info.st_uid if sticky_entries else None
        problem = _directory_problem(current, trusted, skip_above, entry_owner=owner)
        if problem:
            return problem
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                return f"{entry}: too many levels of symbolic links"
            target = os.readlink(entry)
            if target.startswith("/"):
                current = "/"
            pending[:0] = [p for p in target.split("/") if p and p != "."]
        else:
            current = entry
    return _directory_problem(current, trusted, skip_above, entry_owner=None)


def _directory_problem(
    directory: str, trusted: set[int] | frozenset[int], skip_above: str | None, entry_owner: int | None
) -> str | None:
    """Why entries of ``directory`` (the one owned by ``entry_owner``, if given) could be
    replaced by someone not in ``trusted``, or None."""
    if (
        skip_above is not None
        and directory != skip_above
        and (skip_above + "/").startswith(directory.rstrip("/") + "/")
    ):
        return None
    try:
        info = os.stat(directory)
    except OSError as exc:
        return f"{directory}: {exc.strerror}"
    if info.st_uid not in trusted:
        return f"{directory} is owned by uid {info.st_uid}"
    if info.st_mode & 0o022:
        sticky = info.st_mode & stat.S_ISVTX
        if not (sticky and entry_owner is not None and entry_owner in trusted):
            who = "group and others" if info.st_mode & 0o022 == 0o022 else "group" if info.st_mode & 0o020 else "others"
            return f"{directory} is writable by {who} (mode {stat.S_IMODE(info.st_mode):04o})"
    return None
