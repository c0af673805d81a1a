"""The host: every path and every base-user lookup goes through one `Host`.

With ``--root DIR`` the whole filesystem view is moved under DIR: ``/etc/vmailmgr``, the qmail
root, the lock file, and base users, which are then read from ``DIR/etc/passwd`` (never from
the system). Without it, the real paths and ``pwd`` are used. Standard library only: the
runtime launchers bake a root in and use this same class.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path, PurePosixPath

from .formats.config import ConfigChain
from .model import Record

GLOBAL_CONFIG_DIR = "/etc/vmailmgr"
LOCAL_CONFIG_DIR = ".vmailmgr"
LOCK_FILE = "/run/lock/vmreconcile.lock"


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
    """Maps absolute paths under an optional root and looks up base users there."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self._users: dict[str, BaseUser] | None = None

    @property
    def is_rooted(self) -> bool:
        """True under ``--root``: reload commands are printed instead of run."""
        return self.root is not None

    @property
    def can_chown(self) -> bool:
        """Ownership is set only when running as root (with or without ``--root``)."""
        return os.geteuid() == 0

    def path(self, absolute: str | os.PathLike[str]) -> Path:
        """The real location of ``absolute`` (a path as the mail system knows it)."""
        posix = PurePosixPath(absolute)
        if not posix.is_absolute():
            raise ValueError(f"{absolute!s} is not an absolute path")
        if self.root is None:
            return Path(posix)
        return self.root.joinpath(*posix.parts[1:])

    @property
    def config_dir(self) -> Path:
        return self.path(GLOBAL_CONFIG_DIR)

    @property
    def lock_path(self) -> Path:
        return self.path(LOCK_FILE)

    def global_config(self) -> ConfigChain:
        return ConfigChain([self.config_dir])

    def domain_config(self, user: BaseUser) -> ConfigChain:
        """Local ``~base/.vmailmgr`` first, then ``/etc/vmailmgr`` (§3.1)."""
        return ConfigChain([self.home(user) / LOCAL_CONFIG_DIR, self.config_dir])

    def qmail_root(self) -> Path:
        """``qmail-root`` from the global config, mapped under the root."""
        return self.path(self.global_config().text("qmail-root"))

    def control_path(self, name: str) -> Path:
        return self.qmail_root() / "control" / name

    def home(self, user: BaseUser) -> Path:
        return self.path(user.home)

    def base_user(self, name: str) -> BaseUser:
        """Look up a base user; `BaseUserMissing` if there is none."""
        if self.root is None:
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                raise BaseUserMissing(name, "the system password database") from None
            return BaseUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)
        users = self._rooted_users()
        if name not in users:
            raise BaseUserMissing(name, str(self.path("/etc/passwd")))
        return users[name]

    def find_base_user(self, name: str) -> BaseUser | None:
        try:
            return self.base_user(name)
        except BaseUserMissing:
            return None

    def _rooted_users(self) -> dict[str, BaseUser]:
        if self._users is None:
            self._users = {}
            try:
                text = self.path("/etc/passwd").read_text("utf-8", "surrogateescape")
            except OSError:
                text = ""
            for line in text.splitlines():
                parts = line.split(":")
                if len(parts) < 7 or not parts[2].isdigit() or not parts[3].isdigit():
                    continue
                self._users.setdefault(parts[0], BaseUser(parts[0], int(parts[2]), int(parts[3]), parts[5]))
        return self._users
