"""Carry a `Plan` out on a host: each affected file written once, in dependency order.

The plan's changes say *what* differs; the plan's desired state says what each affected file
must contain. So the executor groups changes into units (one option file, one domain setup,
one maildir, one table, one control file) and writes each unit's desired content once:
every change to a domain's ``passwd.cdb`` goes out in a single rewrite. Units run in the order
of their first change: everything in the homes (creates before deletes), then the control
files, so a domain that fails is known before any of its control lines is written.

Mail is never lost: deleting an entry only rewrites the table. A mailbox is removed only for
a ``maildir`` delete change (``--purge-mailboxes``), and even then only ``cur/``, ``new/``,
``tmp/`` and their files go; anything else in the directory (``autoresponse/``, hooks,
files of other tools) stays, and the directory stays with it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..formats.cdb import CdbError, CdbReader, build_cdb
from ..formats.config import PASSWD_CHANGEABLE, layered_value, render_option
from ..formats.control import CONTROL_FILES, NEWMRH, RELOAD, line_key, render_lines
from ..formats.vpwentry import RecordError, decode_record, encode_record, user_key
from ..host import LOCAL_CONFIG_DIR, BaseUser, Host
from ..live import TABLE_LIMIT
from ..model import Domain, ascii_lower, to_bytes
from ..plan.changes import Change, Plan, table_digest
from ..plan.resolve import live_counterparts
from ..tables import read_bounded, read_regular
from ..workflow import configured_qmail_root
from . import writer
from .crashpoint import checkpoint
from .writer import Owner, UnsafePath

Log = Callable[[str], None]
Progress = Callable[[int, int, str], None]

MAILDIR_SUBDIRS = ("cur", "new", "tmp")


@dataclass
class ApplyResult:
    """What happened: messages for people, and errors that make the exit status non-zero.

    ``failed_domains``: domain -> the error that stopped it (its other units were skipped, the
    other domains applied); ``errors`` holds those too, and any host-wide error.
    """

    messages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    failed_domains: dict[str, str] = field(default_factory=dict)

    @property
    def host_wide_errors(self) -> list[str]:
        """The errors that are not one domain's (a control file, a global option, the reload)."""
        scoped = set(self.failed_domains.values())
        return [e for e in self.errors if e not in scoped]


# -- what one unit writes: one small record per kind, so dispatch reads names, not tuple slots --


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionFile:
    """One option file: global (``domain`` None, ``/etc/vmailmgr``) or a domain's ``~/.vmailmgr``."""

    domain: str | None
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainSetup:
    """What vsetup does for a domain, minus the table: ``users/`` and ``.qmail-default``."""

    domain: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MaildirCreate:
    domain: str
    directory: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MaildirPurge:
    domain: str
    directory: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TableFile:
    """A domain's ``passwd.cdb``: every change to its entries goes out in one rewrite."""

    domain: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlFileTarget:
    name: str


Target = OptionFile | DomainSetup | MaildirCreate | MaildirPurge | TableFile | ControlFileTarget


@dataclass(frozen=True, slots=True, kw_only=True)
class Unit:
    """One file or directory to write, with the changes that made it necessary."""

    target: Target
    label: str
    changes: tuple[Change, ...]


def unit_target(change: Change) -> tuple[Target, str]:
    """The file or directory ``change`` writes, and its label for messages."""
    domain = change.domain or ""
    if change.type == "option":
        return OptionFile(domain=change.domain, name=change.target or ""), change.address
    if change.type == "domain":
        return DomainSetup(domain=domain), f"{domain}: domain setup"
    if change.type == "maildir":
        kind = MaildirCreate if change.action == "create" else MaildirPurge
        return kind(domain=domain, directory=change.target or ""), change.address
    if change.type in ("user", "alias"):
        return TableFile(domain=domain), f"{domain}: table"
    return ControlFileTarget(name=change.target or ""), f"control/{change.target}"


def unit_domain(target: Target) -> str | None:
    """The domain whose base user's home ``target`` is in; None for a host-wide file."""
    if isinstance(target, ControlFileTarget):
        return None
    return target.domain or None


def group_units(changes: tuple[Change, ...]) -> list[Unit]:
    """One unit per file or directory to write, in the order of its first change."""
    members: dict[Target, list[Change]] = {}
    labels: dict[Target, str] = {}
    for change in changes:
        target, label = unit_target(change)
        if target not in members:
            members[target] = []
            labels[target] = label
        members[target].append(change)
    return [Unit(target=t, label=labels[t], changes=tuple(members[t])) for t in members]


class Executor:
    """Writes the units of one plan. All paths go through the `Host` (``--root`` aware)."""

    def __init__(self, host: Host, plan: Plan, log: Log) -> None:
        self.host = host
        self.plan = plan
        self.log = log
        self.result = ApplyResult()

    # -- helpers -----------------------------------------------------------------------------

    def domain(self, name: str | None) -> Domain:
        found = self.plan.desired.domain(name or "")
        if found is None:
            raise ValueError(f"plan has no desired domain {name!r}")
        return found

    def owner(self, base_user: BaseUser) -> Owner | None:
        return Owner(base_user.uid, base_user.gid) if self.host.can_chown else None

    def option(self, domain: Domain, name: str):
        return layered_value(name, domain.options, self.plan.desired.options)

    def open_home(self, base_user: BaseUser) -> int:
        home = self.host.home(base_user)
        try:
            return os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{home}: the home of base user {base_user.name} does not exist; "
                "create the account (with its home) first"
            ) from None

    def note(self, message: str) -> None:
        self.result.messages.append(message)
        self.log(message)

    # -- units -------------------------------------------------------------------------------

    def run(self, unit: Unit) -> None:
        match unit.target:
            case OptionFile(domain=domain, name=name):
                self.write_option(domain, name)
            case DomainSetup(domain=domain):
                self.setup_domain(self.domain(domain))
            case MaildirCreate(domain=domain, directory=directory):
                self.make_maildir(self.domain(domain), directory)
            case MaildirPurge(domain=domain, directory=directory):
                self.purge_maildir(self.domain(domain), directory)
            case TableFile(domain=domain):
                self.write_table(self.domain(domain), unit.changes)
            case ControlFileTarget(name=name):
                self.write_control(name, unit.changes)
        self.result.written.append(unit.label)

    def write_option(self, domain_name: str | None, name: str) -> None:
        """One option file (global or per domain), or the authpipe's changeable list."""
        data: bytes | None
        if domain_name is None:
            self.host.config_dir.mkdir(parents=True, exist_ok=True)
            directory, file_name = root_owned_target(self.host.config_dir / name, self.note)
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            owner, where = None, str(directory)
            if name == PASSWD_CHANGEABLE:
                data = to_bytes("".join(line + "\n" for line in self.plan.changeable or ()))
            else:
                value = self.plan.desired.options.get(name)
                data = None if value is None else render_option(value)
        else:
            domain = self.domain(domain_name)
            base_user = self.host.base_user(domain.base_user)
            owner, where = self.owner(base_user), f"~{base_user.name}/{LOCAL_CONFIG_DIR}"
            home_fd = self.open_home(base_user)
            try:
                dir_fd, _ = writer.open_dir(home_fd, LOCAL_CONFIG_DIR, create_mode=0o755, owner=owner, where=where)
            finally:
                os.close(home_fd)
            value = domain.options.get(name)
            data = None if value is None else render_option(value)
            file_name = name  # in a home: a symlink is replaced, never followed
        try:
            if data is None:
                writer.unlink_at(dir_fd, file_name)
            else:
                writer.write_file_at(dir_fd, file_name, data, mode=0o644, owner=owner, where=where, log=self.note)
        finally:
            os.close(dir_fd)

    def setup_domain(self, domain: Domain) -> None:
        """What vsetup does, minus the table: ``users/`` 0755 and ``.qmail-default`` 0644 ([compat: admin-tools])."""
        base_user = self.host.base_user(domain.base_user)
        owner = self.owner(base_user)
        home_fd = self.open_home(base_user)
        try:
            user_dir = str(self.option(domain, "user-dir"))
            if not user_dir.startswith("/"):
                fd, made = writer.walk_dirs(
                    home_fd,
                    writer.split_relative(user_dir),
                    create=lambda i: 0o755,
                    owner=owner,
                    where=f"~{base_user.name}",
                )
                os.close(fd)
                if made:
                    self.note(f"{domain.name}: created {user_dir}")
            content = to_bytes(domain.qmail_default or "")
            current = read_regular(".qmail-default", dir_fd=home_fd, limit=len(content) + 1)
            if current is not None and current != content:
                kept = writer.backup_name(home_fd, ".qmail-default")
                self.note(f"{domain.name}: kept the previous .qmail-default as ~{base_user.name}/{kept}")
            writer.write_file_at(
                home_fd, ".qmail-default", content, mode=0o644, owner=owner, where=f"~{base_user.name}", log=self.note
            )
        finally:
            os.close(home_fd)

    def make_maildir(self, domain: Domain, directory: str, with_subdirs: bool = True) -> None:
        """``mkdirp(dir, 0700)`` with 0755 parents, then cur/new/tmp 0755 ([compat: admin-tools])."""
        base_user = self.host.base_user(domain.base_user)
        owner = self.owner(base_user)
        try:
            parts = writer.split_relative(directory)
        except UnsafePath as exc:  # plan's preflight refuses such a path: converge or fail
            raise UnsafePath(
                exc.errno, f"{domain.name}: mailbox {directory} cannot be created: {exc.strerror}"
            ) from None
        home_fd = self.open_home(base_user)
        try:
            last = len(parts) - 1
            fd, _ = writer.walk_dirs(
                home_fd, parts, create=lambda i: 0o700 if i == last else 0o755, owner=owner, where=f"~{base_user.name}"
            )
            try:
                if with_subdirs:
                    for sub in MAILDIR_SUBDIRS:
                        sub_fd, _ = writer.open_dir(
                            fd, sub, create_mode=0o755, owner=owner, where=f"~{base_user.name}/{directory}/{sub}"
                        )
                        os.close(sub_fd)
                checkpoint(f"maildir {directory}")
            finally:
                os.close(fd)
        finally:
            os.close(home_fd)

    def write_table(self, domain: Domain, changes: tuple[Change, ...]) -> None:
        base_user = self.host.base_user(domain.base_user)
        data = build_cdb((user_key(u.name), encode_record(u)) for u in domain.users)  # refused before any write
        for change in changes:  # vadduser makes the directory even for an alias
            if change.action == "create" and not change.after.get("has_mailbox") and change.after.get("directory"):
                directory = change.after["directory"]
                if not directory.startswith("/"):
                    self.make_maildir(domain, directory, with_subdirs=False)
        parts = writer.split_relative(str(self.option(domain, "password-file")) + ".cdb")
        home_fd = self.open_home(base_user)
        try:
            dir_fd, _ = writer.walk_dirs(home_fd, parts[:-1], where=f"~{base_user.name}")
            expected = self.plan.table_digests.get(domain.name)
            where = os.path.join(self.host.home_str(base_user), *parts)

            def unchanged_since_plan() -> None:
                """Under the temp-file lock: nobody (vadduser, authpipe PASSWD) changed the table."""
                if expected is not None and current_table_digest(dir_fd, parts[-1], where) != expected:
                    raise TableMoved(
                        f"~{base_user.name}/{parts[-1]} changed since the plan was made (vadduser, "
                        "a password change?); nothing written for this domain; run apply again"
                    )

            try:
                writer.write_file_at(
                    dir_fd,
                    parts[-1],
                    data,
                    mode=0o600,
                    owner=self.owner(base_user),
                    where=f"~{base_user.name}",
                    tmpname=parts[-1] + ".tmp",
                    log=self.note,
                    precheck=unchanged_since_plan,
                )
            finally:
                os.close(dir_fd)
        finally:
            os.close(home_fd)

    def write_control(self, name: str, changes: tuple[Change, ...] = ()) -> None:
        """The control file as the plan wants it, except that the lines of a domain that failed
        stay as they were (`lines_without_failed`)."""
        lines = self.plan.desired.control.get(name)
        if lines is None:
            return
        if self.result.failed_domains and name in CONTROL_FILES:
            owners = control_owners(self.plan)
            live = self.plan.live.control.get(name, ()) if self.plan.live is not None else ()
            shape = CONTROL_FILES[name].shape
            lines = lines_without_failed(shape, lines, changes, owners, self.result.failed_domains, live)
        directory, name = root_owned_target(self.host.control_path(name), self.note)
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{directory} does not exist: is qmail installed there (qmail-root)? "
                "vmreconcile does not create qmail's own directories"
            ) from None
        try:
            info = writer.file_info(dir_fd, name)
            mode = info.st_mode & 0o7777 if info is not None and not _is_link(info) else 0o644
            owner = Owner(info.st_uid, info.st_gid) if info is not None and self.host.can_chown else None
            writer.write_file_at(
                dir_fd, name, render_lines(lines), mode=mode, owner=owner, where=str(directory), log=self.note
            )
        finally:
            os.close(dir_fd)

    def purge_maildir(self, domain: Domain, directory: str) -> None:
        """Remove cur/new/tmp and their files; the directory only if nothing else is in it."""
        base_user = self.host.base_user(domain.base_user)
        parts = writer.split_relative(directory)
        home_fd = self.open_home(base_user)
        try:
            try:
                parent_fd, _ = writer.walk_dirs(home_fd, parts[:-1], where=f"~{base_user.name}")
            except FileNotFoundError:
                return
            try:
                try:
                    fd, _ = writer.open_dir(parent_fd, parts[-1], where=f"~{base_user.name}/{directory}")
                except FileNotFoundError:
                    return
                left: list[str] = []
                try:
                    for sub in MAILDIR_SUBDIRS:
                        left += _purge_subdir(fd, sub)
                    left += [n for n in os.listdir(fd) if n not in MAILDIR_SUBDIRS]
                finally:
                    os.close(fd)
                if left:
                    self.note(
                        f"{domain.name}: purged the mail of {directory}; kept {', '.join(sorted(left))} "
                        "(not created by vmreconcile)"
                    )
                else:
                    os.rmdir(parts[-1], dir_fd=parent_fd)
                    os.fsync(parent_fd)
                    self.note(f"{domain.name}: removed mailbox {directory}")
            finally:
                os.close(parent_fd)
        finally:
            os.close(home_fd)


def control_owners(plan: Plan) -> dict[str, frozenset[str]]:
    """Control-file key (a domain's name, ``.name`` when wildcard, an alias) -> the domains of
    the plan it belongs to, as the plan wants it *or* as it is live.

    Both sides count: a renamed domain's old name (the same base user's table) and an alias or
    wildcard it drops have no desired owner, yet their lines are that domain's, and a name moved
    from one domain to another is both domains'. A live domain is named by the desired domain
    it becomes (`live_counterparts`), as failed domains are."""
    owners: dict[str, set[str]] = {}

    def claim(domain: Domain, owner: str) -> None:
        for key in domain.virtualdomains_keys:
            owners.setdefault(ascii_lower(key), set()).add(owner)

    for domain in plan.desired.domains:
        claim(domain, domain.name)
    if plan.live is not None:
        for owner, live in live_counterparts(plan.desired.domains, plan.live).items():
            claim(live, owner)
    return {key: frozenset(names) for key, names in owners.items()}


def of_failed_domain(change: Change, owners: Mapping[str, Collection[str]], failed: Collection[str]) -> bool:
    """Whether a control-line ``change`` belongs (`control_owners`) to a domain in ``failed``."""
    key = change.address.rsplit("/", 1)[-1]
    return any(owner in failed for owner in owners.get(key, ()))


def lines_without_failed(
    shape: str,
    lines: tuple[str, ...],
    changes: tuple[Change, ...],
    owners: Mapping[str, Collection[str]],
    failed: Collection[str],
    live: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """``lines`` (the plan's content for a control file) with every change of a failed domain
    undone: a line it would add is left out, a line it would rewrite keeps its old form, a line
    it would remove stays, where it was in ``live`` (the file as the plan read it; at the end
    when not found there). So mail is never routed or accepted (``virtualdomains``,
    ``rcpthosts``) for a domain whose home, mailboxes or table could not be written, and a
    domain that failed is, in the control files too, exactly as it was; every other domain's
    lines are the plan's."""
    undo: dict[str, Change] = {}
    for change in changes:
        if of_failed_domain(change, owners, failed):
            undo[change.address.rsplit("/", 1)[-1]] = change
    if not undo:
        return lines
    out: list[str] = []
    restored: set[str] = set()
    for line in lines:
        line_owner = line_key(shape, line)
        undone = undo.get(line_owner) if line_owner is not None else None
        if undone is None:
            out.append(line)
        elif undone.action == "update" and undone.address not in restored:
            restored.add(undone.address)
            out.extend(undone.before.get("lines", ()))
    for change in undo.values():  # the lines it would have removed
        if change.action == "delete":
            _put_back(out, change.before["line"], live)
    return tuple(out)


def _put_back(out: list[str], line: str, live: tuple[str, ...]) -> None:
    """Insert ``line`` into ``out`` after the nearest line that preceded it in ``live`` and is
    still in ``out`` (at the start when none is; at the end when ``live`` lacks it)."""
    if line not in live:
        out.append(line)
        return
    at = live.index(line)
    for earlier in reversed(live[:at]):
        if earlier in out:
            out.insert(out.index(earlier) + 1, line)
            return
    out.insert(0, line)


class TableMoved(ValueError):
    """The table is not the one the plan was made against."""


def current_table_digest(dir_fd: int, name: str, where: str | None = None) -> str:
    """`table_digest` of the table as it is now (a missing one is empty), read as plan reads it:
    bounded, one link only, layout checked; errors name the table (``where``)."""
    raw = read_bounded(name, dir_fd=dir_fd, limit=TABLE_LIMIT, max_links=1, where=where)
    if raw is None:
        return table_digest(())
    try:
        reader = CdbReader(raw)
        reader.check_layout()
        return table_digest(decode_record(k, v) for k, v in reader.items())
    except (CdbError, RecordError) as exc:
        raise TableMoved(f"{where or name}: {exc}") from None


def _is_link(info: os.stat_result) -> bool:
    import stat

    return stat.S_ISLNK(info.st_mode)


def _purge_subdir(parent_fd: int, name: str) -> list[str]:
    """Delete the entries (files, symlinks themselves) of one maildir subdirectory, then it."""
    import stat

    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    except FileNotFoundError:
        return []
    except OSError:
        return [name]  # a symlink or a file where a maildir subdir belongs: not ours to judge
    kept = []
    try:
        for entry in os.listdir(fd):
            info = os.stat(entry, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                kept.append(f"{name}/{entry}")
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    if kept:
        return kept
    os.rmdir(name, dir_fd=parent_fd)
    return []


def root_owned_target(path: Path, note: Log) -> tuple[Path, str]:
    """(directory, name) to write for a file in a root-owned directory (qmail's control
    directory, /etc/vmailmgr): an admin's symlink there is written through, so its target stays
    the file qmail reads. (In base users' homes symlinks are never followed: see writer.)"""
    if not path.is_symlink():
        return path.parent, path.name
    target = Path(os.path.realpath(path))
    note(f"{path} is a symbolic link: writing its target {target}")
    return target.parent, target.name


def execute(plan: Plan, host: Host, *, log: Log = lambda _: None, progress: Progress | None = None) -> ApplyResult:
    """Write every unit of ``plan``, then run qmail-newmrh / the reload command when needed.

    The caller holds the global lock. One tenant cannot block the others: an error in a unit
    of a domain (its home, options, mailboxes, table: a lock held on its ``passwd.cdb.tmp``, a
    table that moved since the plan, a planted symlink) fails that domain only; its remaining
    units are skipped, the control files keep its lines as they were (`lines_without_failed`),
    and every other domain is applied. The failed domains are in ``failed_domains`` and
    ``errors``. An error in a host-wide unit (a control file, a global option) stops the apply
    there, as nothing after it can be trusted. Units already written stay written: each is
    complete on its own.

    The plan's order writes every unit in a home before any control file (`plan.changes`), so
    a failed domain is known before its lines could be written. Should a domain's unit still
    fail after a control file was written, that domain was not left as it was: its error says
    which control files already carry its planned lines, and it is not in ``failed_domains``
    (apply reports it as an error, with everything written before it).
    """
    host = host.using_qmail_root(configured_qmail_root(plan.desired.options))
    runner = Executor(host, plan, log)
    failed = runner.result.failed_domains
    units = group_units(plan.changes)
    touched: set[str] = set()
    controls: list[str] = []  # the control files written so far
    given_up: set[str] = set()  # domains that failed after a control file was written
    for done, unit in enumerate(units):
        if progress is not None:
            progress(done, len(units), unit.label)
        domain = unit_domain(unit.target)
        if domain is not None and (domain in failed or domain in given_up):
            continue  # depends on what failed there: a table without its maildirs, ...
        try:
            runner.run(unit)
        except (OSError, ValueError) as exc:
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror and not exc.filename else str(exc)
            if domain is None:
                runner.result.errors.append(f"{unit.label}: {message}")
                return runner.result
            named = unit.label.startswith((f"{domain}:", f"{domain}/", f"option/{domain}/"))
            error = f"{unit.label}: {message}" if named else f"{domain}: {unit.label}: {message}"
            if controls:
                given_up.add(domain)
                error += (
                    f" (after {', '.join(controls)} had been written with this domain's lines as planned; "
                    "its remaining changes were not made)"
                )
            else:
                failed[domain] = error
            runner.result.errors.append(error)
            runner.note(f"{domain}: failed; its other changes are skipped, the other domains go on")
            continue
        if isinstance(unit.target, ControlFileTarget):
            controls.append(unit.label)
            if _applies_any(unit.changes, plan, failed):
                touched.add(unit.target.name)
        checkpoint(f"unit {unit.label} done")
    if progress is not None:
        progress(len(units), len(units), "done")
    actions = {CONTROL_FILES[name].after_write for name in touched if name in CONTROL_FILES}
    if NEWMRH in actions:
        run_newmrh(host, runner)
    if RELOAD in actions:
        run_reload(host, plan.reload_command, runner)
    return runner.result


def _applies_any(changes: tuple[Change, ...], plan: Plan, failed: dict[str, str]) -> bool:
    """Whether a control file's unit wrote a change of a domain that did not fail (only then
    is qmail told to reread it)."""
    if not failed:
        return bool(changes)
    owners = control_owners(plan)
    return any(not of_failed_domain(c, owners, failed) for c in changes)


def run_newmrh(host: Host, runner: Executor) -> None:
    """``morercpthosts`` is read through its cdb: rebuild it with qmail-newmrh."""
    program = host.qmail_root() / "bin" / "qmail-newmrh"
    if host.root is not None:
        runner.note(
            f"morercpthosts changed: run {Path('/', *program.relative_to(host.root).parts)} on the "
            "real host (not run under --root)"
        )
    elif program.exists():
        done = subprocess.run([str(program)], capture_output=True, text=True)
        if done.returncode != 0:
            runner.result.errors.append(f"{program} failed (exit {done.returncode}): {done.stderr.strip()}")
        else:
            runner.note(f"ran {program}")
    else:
        runner.note(f"morercpthosts changed: {program} is missing; run qmail-newmrh before qmail-smtpd sees it")


def run_reload(host: Host, command: str | None, runner: Executor) -> None:
    """Run the configured reload once (qmail-send rereads virtualdomains on HUP)."""
    if not command:
        runner.note(
            "control/virtualdomains changed: tell qmail-send to reread it (e.g. svc -h "
            "/service/qmail-send); no reload command is configured"
        )
        return
    if host.is_rooted:
        runner.note(f"control/virtualdomains changed: would run `{command}` (not run under --root)")
        return
    try:
        done = subprocess.run(shlex.split(command), capture_output=True, text=True)
    except OSError as exc:
        runner.result.errors.append(f"reload command `{command}` could not run: {exc.strerror}")
        return
    if done.returncode != 0:
        runner.result.errors.append(
            f"reload command `{command}` failed (exit {done.returncode}): {done.stderr.strip()}"
        )
    else:
        runner.note(f"ran reload command `{command}`")
