"""Plan's preflight: what apply needs from the host, checked when the plan is made.

A plan is a promise that apply can carry it out. So before anything is planned, the host is
checked for everything apply will rely on, and what is wrong is reported as a plan error naming
the domain, the path and (for a YAML domain) where it is written:

* the host: ``qmail-root`` absolute, the qmail root and its ``control/`` directories present;
  the global options in effect within their documented types and ranges;
* each domain's base user: it exists, is not uid 0, is not a system account (uid below
  ``UID_MIN`` of ``/etc/login.defs``) unless the domain says ``system_account: true``; its home
  is an absolute path to an existing directory owned by it, is not ``/``, and neither is, nor
  lies inside, nor contains another base user's home (one home holds one table);
* each domain's options in effect (its ``~/.vmailmgr`` files and the YAML's) within their
  types and ranges (`formats.config.option_problem`, the same check ``validate`` runs);
* every path apply would create in a home (maildirs, alias directories, the table) stays
  inside it and within ``NAME_MAX``/``PATH_MAX``.

Only ``stat`` calls per domain, never per user: the path checks are string checks on the
plan's changes. Host-wide problems raise `HostProblems` (nothing can be planned); a domain's
problems leave that domain out of the plan, so one broken tenant does not block the others.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .desired.spec import DomainSpec, Position, Spec
from .formats.config import layered_value, option_problem
from .formats.control import MANAGED_FILES
from .formats.userdir import NAME_MAX, PATH_MAX, relative_path_problem
from .host import GLOBAL_CONFIG_DIR, LOCAL_CONFIG_DIR, BaseUser, BaseUserMissing, Host, untrusted_directory
from .model import HostState, OptionValue, to_bytes
from .plan.changes import Change
from .tables import UnsafeFile, read_bounded

#: ``UID_MIN`` when ``/etc/login.defs`` does not say (Debian's and shadow's default).
DEFAULT_UID_MIN = 1000
LOGIN_DEFS = "/etc/login.defs"


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a domain (or, with ``domain`` None, the whole host) cannot be planned."""

    message: str
    domain: str | None = None
    position: Position | None = None

    def __str__(self) -> str:
        where = f"{self.position}: " if self.position else ""
        who = f"domain {self.domain}: " if self.domain else ""
        return f"{where}{who}{self.message}"


class HostProblems(Exception):
    """Problems that stop the whole plan: no domain can be planned on this host as it is."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


# -- the host -------------------------------------------------------------------------------


def check_qmail_root(host: Host) -> None:
    """``qmail-root`` is absolute, the qmail root and its ``control/`` are directories, and
    they and ``/etc/vmailmgr`` are safe for root to write into (`check_trusted_dirs`)."""
    try:
        qmail_root = host.qmail_root_str()
    except ValueError:
        where = f"{GLOBAL_CONFIG_DIR}/qmail-root"
        value = host.global_config().text("qmail-root")
        raise HostProblems([Problem(f"{where}: {value!r} is not an absolute path; write e.g. /var/qmail/")]) from None
    for path, what in (
        (qmail_root, "the qmail root"),
        (os.path.join(qmail_root, "control"), "qmail's control directory"),
    ):
        if not _is_dir(path):
            raise HostProblems(
                [
                    Problem(
                        f"{path}: {what} does not exist or is not a directory: is qmail installed there "
                        "(qmail.root, /etc/vmailmgr/qmail-root)? vmreconcile does not create qmail's directories"
                    )
                ]
            )
    check_trusted_dirs(host, qmail_root)


def check_trusted_dirs(host: Host, qmail_root: str) -> None:
    """Apply writes, as root, into qmail's ``control/`` directory and ``/etc/vmailmgr``: each
    must be root's and writable by nobody else, and so must every directory on the way there
    (symbolic links followed), or whoever controls one of them (a tenant whose home a YAML
    ``qmail.root`` points into) could swap a link in and have root write ``/etc/passwd``.

    Under ``--root DIR`` the invoking user owns the throwaway tree: a directory owned by that
    user or by root passes, and the directories above DIR are not looked at (the tree's place
    is the caller's choice). A directory that does not exist yet ends the walk (apply creates
    ``/etc/vmailmgr`` as root; qmail's missing directories are refused above).
    """
    trusted = {0, os.geteuid()} if host.is_rooted else {0}
    problems = []
    for path, what in (
        (qmail_root, "the qmail root"),
        (os.path.join(qmail_root, "control"), "qmail's control directory"),
        (host.config_dir_str, "the vmailmgr configuration directory"),
    ):
        unsafe = untrusted_directory(path, trusted, host.root_str)
        if unsafe is not None:
            owners = "root or you (under --root)" if host.is_rooted else "root"
            problems.append(
                Problem(
                    f"{path}: {what} is not safe for root to write into: {unsafe}; "
                    f"it and every directory above it must be owned by {owners} and writable by no one else"
                )
            )
    control = os.path.join(qmail_root, "control")
    linked = [os.path.join(control, managed.name) for managed in MANAGED_FILES]
    with contextlib.suppress(OSError):  # missing: apply makes it
        linked += [os.path.join(host.config_dir_str, name) for name in sorted(os.listdir(host.config_dir_str))]
    for path in linked:  # an admin's symlinked control or option file is written through
        if os.path.islink(path):
            unsafe = untrusted_directory(os.path.dirname(os.path.realpath(path)), trusted, host.root_str)
            if unsafe is not None:
                problems.append(
                    Problem(f"{path}: is a symbolic link into a directory root must not write into: {unsafe}")
                )
    if problems:
        raise HostProblems(problems)


def check_global_options(live: Mapping[str, OptionValue], spec: Spec) -> None:
    """The global options in effect: the YAML's (``validate`` checked them) and the live
    ``/etc/vmailmgr`` files the YAML does not override."""
    problems = [
        Problem(f"{GLOBAL_CONFIG_DIR}/{name}: {problem}")
        for name, value in live.items()
        if name not in spec.options and (problem := option_problem(name, value))
    ]
    if problems:
        raise HostProblems(problems)


def uid_min(host: Host) -> int:
    """``UID_MIN`` of the host's ``/etc/login.defs`` (under ``--root``, DIR's), else 1000."""
    try:
        raw = read_bounded(host.fspath(LOGIN_DEFS), limit=1 << 20, follow_symlinks=True)
    except UnsafeFile:
        raw = None
    for line in (raw or b"").decode("utf-8", "replace").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "UID_MIN" and words[1].isdigit():
            return int(words[1])
    return DEFAULT_UID_MIN


# -- the base users and their homes ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Home:
    """A base user and where its home really is (symlinks the administrator made resolved)."""

    user: BaseUser
    real: str


def check_domains(
    host: Host,
    spec: Spec,
    domains: Iterable[DomainSpec],
    others: Iterable[str] = (),
    global_options: Mapping[str, OptionValue] | None = None,
) -> list[Problem]:
    """Problems of ``domains`` (some of ``spec``'s) with their base users and homes.

    Homes are compared with those of every domain of ``spec`` and of the base users ``others``
    (the live ``virtualdomains``): a shared or nested home would mean one table for two domains.
    With ``global_options`` (the live ``/etc/vmailmgr``), what apply makes at the top of each
    home is looked at too (`home_entry_problems`).
    """
    minimum = uid_min(host)
    top = os.path.realpath(host.fspath("/"))
    homes: dict[str, Home] = {}
    for name in sorted({d.base_user for d in spec.domains} | set(others)):
        user = host.find_base_user(name)
        if user is not None and user.home.startswith("/"):
            real = os.path.realpath(host.home_str(user))
            if real != top:  # a home that is '/' is refused on its own; it "contains" every other
                homes[name] = Home(user, real)
    overlaps = HomeIndex(homes.values())
    problems = []
    for dspec in domains:
        problems += [Problem(m, dspec.name, dspec.position) for m in _base_user_problems(host, dspec, minimum, top)]
        mine = homes.get(dspec.base_user)
        if mine is not None:
            problems += [Problem(m, dspec.name, dspec.position) for m in overlaps.problems(mine, host)]
            if global_options is not None and not any(p.domain == dspec.name for p in problems):
                layers = (dspec.options, spec.options, global_options)
                found = home_entry_problems(host.home_str(mine.user), layers)
                problems += [Problem(m, dspec.name, dspec.position) for m in found]
    return problems


def home_entry_problems(home: str, layers: tuple[Mapping[str, OptionValue], ...]) -> list[str]:
    """What apply creates or replaces at the top of a home, looked at with ``lstat`` (a few
    calls per domain): ``.vmailmgr/`` and the first directory of ``user-dir`` must be real
    directories, the table and ``.qmail-default`` regular files (a planted symlink, FIFO or
    device is reported now, not when apply reaches it). A domain whose files exist gets the
    same checks again, and more, when they are read."""
    user_dir = str(layered_value("user-dir", *layers))
    first = next((p for p in user_dir.split("/") if p not in ("", ".")), None)
    wanted = [(LOCAL_CONFIG_DIR, stat.S_ISDIR), (".qmail-default", stat.S_ISREG)]
    wanted.append((str(layered_value("password-file", *layers)) + ".cdb", stat.S_ISREG))
    if first is not None and first != ".." and not user_dir.startswith("/"):
        wanted.append((first, stat.S_ISDIR))
    problems = []
    for name, is_kind in wanted:
        path = os.path.join(home, name)
        try:
            mode = os.lstat(path).st_mode
        except (OSError, ValueError):
            continue
        if stat.S_ISLNK(mode):
            problems.append(f"{path}: is a symbolic link; refusing to follow it")
        elif not is_kind(mode):
            kind = "a directory" if is_kind is stat.S_ISDIR else "a regular file"
            problems.append(f"{path}: is not {kind}; refusing to use it")
    return problems


def _base_user_problems(host: Host, dspec: DomainSpec, minimum: int, top: str) -> list[str]:
    try:
        user = host.base_user(dspec.base_user)
    except BaseUserMissing as exc:
        return [str(exc)]
    name = f"base user {user.name!r}"
    if user.uid == 0:
        return [f"{name} has uid 0: a domain never belongs to root (its table and mailboxes would be root's)"]
    problems = []
    if user.uid < minimum and not dspec.system_account:
        problems.append(
            f"{name} is a system account (uid {user.uid} < UID_MIN {minimum} of {LOGIN_DEFS}); "
            "give the domain its own account, or write system_account: true for the domain if this one is meant"
        )
    if not user.home.startswith("/"):
        return problems + [f"{name}: home {user.home!r} is not an absolute path"]
    home = host.home_str(user)
    try:
        info = os.stat(home)
    except FileNotFoundError:
        return problems + [f"{home}: the home of {name} does not exist; create it (owned by {user.name}) first"]
    except OSError as exc:
        return problems + [f"{home}: the home of {name} cannot be used: {exc.strerror}"]
    if not stat.S_ISDIR(info.st_mode):
        return problems + [f"{home}: the home of {name} is not a directory"]
    if os.path.realpath(home) == top:
        return problems + [f"{home}: the home of {name} is the root directory '/'; give it a home of its own"]
    if info.st_uid != user.uid and not _tree_owner_exception(host, info.st_uid):
        problems.append(
            f"{home}: the home of {name} (uid {user.uid}) is owned by uid {info.st_uid}; "
            "vmreconcile writes tables and mailboxes only into a home its base user owns"
        )
    return problems


def _tree_owner_exception(host: Host, owner: int) -> bool:
    """Under ``--root`` as an ordinary user, a home owned by that user passes: a throwaway tree
    cannot hold other owners (and nothing is chowned then). As root, real ownership counts."""
    return host.is_rooted and not host.can_chown and owner == os.geteuid()


class HomeIndex:
    """Homes by their real path and by every directory above them, so that finding the homes
    equal to, above or below one home costs its depth, not the number of homes (a fleet of
    1,000 domains is checked in milliseconds)."""

    def __init__(self, homes: Iterable[Home]) -> None:
        self.at: dict[str, list[Home]] = {}
        self.below: dict[str, list[Home]] = {}
        for home in homes:
            self.at.setdefault(home.real, []).append(home)
            for parent in _parents(home.real):
                self.below.setdefault(parent, []).append(home)

    def problems(self, mine: Home, host: Host) -> list[str]:
        related = [(other, "is also the home of") for other in self.at.get(mine.real, ())]
        related += [(other, "lies inside the home of") for p in _parents(mine.real) for other in self.at.get(p, ())]
        related += [(other, "contains the home of") for other in self.below.get(mine.real, ())]
        return [
            f"{host.home_str(mine.user)}: the home of base user {mine.user.name!r} {relation} "
            f"base user {other.user.name!r} ({host.home_str(other.user)}): each base user needs a home of its own"
            for other, relation in related
            if other.user.name != mine.user.name
        ]


def _parents(path: str) -> list[str]:
    """``/a/b/c`` -> ``/a/b``, ``/a`` (never ``/``: a home that is ``/`` is refused on its own)."""
    out: list[str] = []
    while True:
        path = os.path.dirname(path)
        if path in ("/", ""):
            return out
        out.append(path)


# -- options in effect and derived paths -----------------------------------------------------


def domain_option_problems(dspec: DomainSpec, live_options: Mapping[str, OptionValue], home: str) -> list[Problem]:
    """The domain's ``~/.vmailmgr`` values the YAML does not override (the YAML's own were
    checked by ``validate``), with the file named."""
    return [
        Problem(f"{home}/{LOCAL_CONFIG_DIR}/{name}: {problem}", dspec.name, dspec.position)
        for name, value in live_options.items()
        if name not in dspec.options and (problem := option_problem(name, value))
    ]


def snapshot_option_problems(state: HostState) -> list[Problem]:
    """The options of a saved ``show`` document (``plan --state``), checked like the host's."""
    problems = [
        Problem(f"{GLOBAL_CONFIG_DIR}/{name}: {problem}")
        for name, value in state.options.items()
        if (problem := option_problem(name, value))
    ]
    for domain in state.domains:
        problems += [
            Problem(f"~{domain.base_user}/{LOCAL_CONFIG_DIR}/{name}: {problem}", domain.name)
            for name, value in domain.options.items()
            if (problem := option_problem(name, value))
        ]
    return problems


def change_path_problems(
    changes: Iterable[Change],
    spec: Spec,
    homes: Mapping[str, str],
    options: Mapping[str, tuple[Mapping[str, OptionValue], ...]],
) -> list[Problem]:
    """Paths apply would create in a home, from the plan's changes: maildirs and the directories
    of new aliases (relative to the home, inside it, within NAME_MAX/PATH_MAX), and the table's
    file name with its temp file. ``homes``: domain -> home as the mail system knows it;
    ``options``: domain -> its option layers (domain, then global)."""
    by_name = {d.name: d for d in spec.domains}
    problems: list[Problem] = []
    seen: set[str] = set()
    for change in changes:
        domain = change.domain
        if domain is None or domain not in homes:
            continue
        dspec = by_name.get(domain)
        directory = _created_directory(change)
        if directory is not None and directory not in seen:
            seen.add(directory)
            problem = path_problem(homes[domain], directory)
            if problem:
                problems.append(
                    Problem(f"{change.address}: directory {directory!r} {problem}", domain, _position(dspec, change))
                )
        if change.type in ("user", "alias") and domain not in seen:
            seen.add(domain)
            password_file = str(layered_value("password-file", *options.get(domain, ())))
            if len(to_bytes(password_file)) + len(".cdb.tmp") > NAME_MAX:
                problems.append(
                    Problem(
                        f"password-file {password_file!r}: the table's temp file name would be longer than {NAME_MAX} bytes",
                        domain,
                    )
                )
    return problems


def _created_directory(change: Change) -> str | None:
    """The home-relative directory ``change`` makes apply create, if any."""
    if change.type == "maildir" and change.action == "create":
        return change.target
    if change.type in ("user", "alias") and change.action == "create" and not change.after.get("has_mailbox"):
        directory = change.after.get("directory")
        if isinstance(directory, str) and directory and not directory.startswith("/"):
            return directory
    return None


def path_problem(home: str, directory: str) -> str | None:
    """Why ``directory`` (relative to ``home``) cannot be made there, or None."""
    problem = relative_path_problem(directory)
    if problem:
        return problem
    full = len(to_bytes(home.rstrip("/"))) + 1 + len(to_bytes(directory)) + len("/cur")
    if full >= PATH_MAX:
        return f"would be a path of {full} bytes in the home (at most {PATH_MAX - 1})"
    return None


def _position(dspec: DomainSpec | None, change: Change) -> Position | None:
    if dspec is None:
        return None
    name = change.address.split("/", 2)[1] if change.address.count("/") >= 1 else ""
    for user in dspec.users:
        if user.name.lower() == name.lower() or name.lower() in (a.lower() for a in user.aliases):
            return user.position or dspec.position
    return dspec.position


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
