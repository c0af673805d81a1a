"""The files an apply replaces or removes, read for the history and written back by rollback.

A file is named by a `FileRef`: what it is (``kind``: ``table``, ``qmail-default``,
``option``, ``control``), its path as the mail system knows it (``/home/vbase1/passwd.cdb``,
never the ``--root`` prefix), and for a file in a base user's home, whose home and the path
inside it. Files in homes are read and written exactly as apply does: walked one component at
a time without following symlinks (`apply.writer`), replaced by rename, a table through
VMailMgr's own ``passwd.cdb.tmp`` lock. In root-owned directories (qmail's control files,
``/etc/vmailmgr``) an admin's symlink is followed to the file it names, as apply does, and the
history records that file.

Which files: one per unit of the plan (`apply.execute.group_units`), so the history holds
exactly what apply is about to write. Directories apply makes (``users/``, maildirs) are not
files it replaces; a maildir purge (``--purge-mailboxes``) deletes mail, which the history
does not keep (see docs/plan-apply.md).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..apply import writer
from ..apply.crashpoint import checkpoint
from ..apply.execute import (
    ControlFileTarget,
    DomainSetup,
    MaildirCreate,
    MaildirPurge,
    OptionFile,
    TableFile,
    group_units,
    root_owned_target,
)
from ..formats.config import layered_value
from ..host import LOCAL_CONFIG_DIR, Host
from ..live import TABLE_LIMIT
from ..plan.changes import Plan
from ..workflow import configured_qmail_root

Log = Callable[[str], None]

TABLE, QMAIL_DEFAULT, OPTION, CONTROL = "table", "qmail-default", "option", "control"
#: The ``.qmail-default~`` apply keeps of a different ``.qmail-default`` (vsetup does the same).
BACKUP = "qmail-default-backup"


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRef:
    """One file: its kind, its path as the mail system knows it, and (in a home) whose home."""

    kind: str
    path: str
    base_user: str | None = None
    relative: str | None = None  # inside the home, e.g. "passwd.cdb", ".vmailmgr/user-dir"

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "path": self.path, "base_user": self.base_user, "relative": self.relative}

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> FileRef:
        return cls(
            kind=str(doc["kind"]),
            path=str(doc["path"]),
            base_user=doc.get("base_user") if isinstance(doc.get("base_user"), str) else None,  # type: ignore[arg-type]
            relative=doc.get("relative") if isinstance(doc.get("relative"), str) else None,  # type: ignore[arg-type]
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FileState:
    """A file as it is (or was): missing, a regular file with its bytes, or something else.

    ``type`` is ``missing``, ``file``, ``symlink`` (its target in ``link``; never followed in
    a home) or ``other`` (a directory, a FIFO ...). Only regular files are restored.
    """

    type: str
    data: bytes | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    mtime_ns: int | None = None
    link: str | None = None

    @property
    def exists(self) -> bool:
        return self.type != "missing"

    @property
    def sha256(self) -> str | None:
        return hashlib.sha256(self.data).hexdigest() if self.data is not None else None

    def same_as(self, other: FileState) -> bool:
        """Same content: both missing, both the same bytes, or the same symlink."""
        return (self.type, self.sha256, self.link) == (other.type, other.sha256, other.link)

    def as_json(self, blob: str | None = None) -> dict[str, object]:
        """The metadata (and the name of the blob holding the bytes, when kept)."""
        return {
            "type": self.type,
            "sha256": self.sha256,
            "size": len(self.data) if self.data is not None else None,
            "mode": f"{self.mode:04o}" if self.mode is not None else None,
            "uid": self.uid,
            "gid": self.gid,
            "mtime_ns": self.mtime_ns,
            "link": self.link,
            "blob": blob,
        }


MISSING = FileState(type="missing")


def described(doc: dict[str, object], data: bytes | None = None) -> FileState:
    """A `FileState` from its `FileState.as_json` form (``data`` read from the blob)."""
    mode = doc.get("mode")
    return FileState(
        type=str(doc.get("type", "missing")),
        data=data,
        mode=int(mode, 8) if isinstance(mode, str) else None,
        uid=doc.get("uid") if isinstance(doc.get("uid"), int) else None,  # type: ignore[arg-type]
        gid=doc.get("gid") if isinstance(doc.get("gid"), int) else None,  # type: ignore[arg-type]
        mtime_ns=doc.get("mtime_ns") if isinstance(doc.get("mtime_ns"), int) else None,  # type: ignore[arg-type]
        link=doc.get("link") if isinstance(doc.get("link"), str) else None,  # type: ignore[arg-type]
    )


# -- which files a plan writes -----------------------------------------------------------------

#: The units that replace or remove files (`plan_files` handles each), and those that only make
#: or purge maildirs; a test checks that together they are every kind of unit apply has.
FILE_UNITS = (OptionFile, DomainSetup, TableFile, ControlFileTarget)
NOT_FILE_UNITS = (MaildirCreate, MaildirPurge)


def plan_files(host: Host, plan: Plan) -> list[FileRef]:
    """Every file the units of ``plan`` replace or remove, in unit order, each once."""
    host = host.using_qmail_root(configured_qmail_root(plan.desired.options))
    refs: list[FileRef] = []
    for unit in group_units(plan.changes):
        ref = None
        match unit.target:
            case OptionFile(domain=None, name=name):
                ref = _root_owned(host, OPTION, host.config_dir / name)
            case OptionFile(domain=domain, name=name):
                ref = _in_home(host, plan, domain, OPTION, f"{LOCAL_CONFIG_DIR}/{name}")
            case DomainSetup(domain=domain):
                ref = _in_home(host, plan, domain, QMAIL_DEFAULT, ".qmail-default")
                backup = _backup_ref(host, ref) if ref is not None else None
                if backup is not None:  # where apply keeps a different .qmail-default (rollback removes it)
                    refs.append(backup)
            case TableFile(domain=domain):
                found = plan.desired.domain(domain)
                if found is not None:
                    password_file = layered_value("password-file", found.options, plan.desired.options)
                    ref = _in_home(host, plan, domain, TABLE, f"{password_file}.cdb")
            case ControlFileTarget(name=name):
                ref = _root_owned(host, CONTROL, host.control_path(name))
        if ref is not None and ref not in refs:
            refs.append(ref)
    return refs


def _root_owned(host: Host, kind: str, path: Path) -> FileRef:
    directory, name = root_owned_target(path, lambda _message: None)
    return FileRef(kind=kind, path=unrooted(host, directory / name))


def _in_home(host: Host, plan: Plan, domain_name: str | None, kind: str, relative: str) -> FileRef | None:
    """A file in the home of the domain's base user, its path as the mail system knows it."""
    domain = plan.desired.domain(domain_name or "")
    if domain is None:
        return None
    home = host.base_user(domain.base_user).home.rstrip("/")
    return FileRef(kind=kind, path=f"{home}/{relative}", base_user=domain.base_user, relative=relative)


def _backup_ref(host: Host, ref: FileRef) -> FileRef | None:
    """The name apply's `writer.backup_name` will give a backup of ``ref``: the first free one."""
    opened = _open_parent(host, ref, create=False)
    if opened is None:
        return None
    dir_fd, name = opened
    try:
        free = next((c for c in writer.backup_candidates(name) if writer.file_info(dir_fd, c) is None), None)
    finally:
        os.close(dir_fd)
    if free is None:
        return None
    relative = f"{os.path.dirname(ref.relative or '')}/{free}".lstrip("/")
    return FileRef(kind=BACKUP, path=f"{os.path.dirname(ref.path)}/{free}", base_user=ref.base_user, relative=relative)


def unrooted(host: Host, path: Path) -> str:
    """``path`` as the mail system knows it: the ``--root`` prefix taken off."""
    if host.root_str is None:
        return str(path)
    try:
        return "/" + path.relative_to(host.root_str).as_posix().lstrip("/")
    except ValueError:  # a symlink out of the root: name the real place
        return str(path)


# -- reading ------------------------------------------------------------------------------------


#: The largest file the history keeps a copy of: the cap plan puts on a table (the largest file
#: apply replaces). A file that grew past it between plan and apply is not read whole.
MAX_KEPT = TABLE_LIMIT


def read_state(host: Host, ref: FileRef) -> FileState:
    """The file as it is now (symlinks in homes are reported, never followed).

    Files are read with the limits plan applies to them: at most `MAX_KEPT` bytes, and a table
    with one link only (a hard link planted after the plan could be another tenant's table, whose
    hashes must not end up in the history; apply's own ``.qmail-default~`` backup is a hard link,
    so other files may have two). Such a file is recorded without its bytes, as
    ``other``: apply replaces it as usual, and rollback cannot bring it back (it says so).
    """
    opened = _open_parent(host, ref, create=False)
    if opened is None:
        return MISSING
    dir_fd, name = opened
    try:
        return state_at(dir_fd, name, max_links=1 if ref.kind == TABLE else None)
    finally:
        os.close(dir_fd)


def state_at(dir_fd: int, name: str, *, max_links: int | None = None) -> FileState:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return MISSING
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            return _with_meta("symlink", info, link=os.readlink(name, dir_fd=dir_fd))
        return _with_meta("other", info)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return _with_meta("other", info)
        if (max_links is not None and info.st_nlink > max_links) or info.st_size > MAX_KEPT:
            return _with_meta("other", info)
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > MAX_KEPT:  # grew while read
                return _with_meta("other", info)
            chunks.append(chunk)
        return _with_meta("file", info, data=b"".join(chunks))
    finally:
        os.close(fd)


def _with_meta(kind: str, info: os.stat_result, *, data: bytes | None = None, link: str | None = None) -> FileState:
    return FileState(
        type=kind,
        data=data,
        link=link,
        mode=info.st_mode & 0o7777,
        uid=info.st_uid,
        gid=info.st_gid,
        mtime_ns=info.st_mtime_ns,
    )


def _open_parent(host: Host, ref: FileRef, *, create: bool) -> tuple[int, str] | None:
    """(fd of the file's directory, its name), None when the directory does not exist.

    In a home: walked without following symlinks (a symlinked ``.vmailmgr`` raises
    `writer.UnsafePath`); with ``create`` missing directories are made as apply makes them
    (0755, owned by the base user when root).
    """
    if ref.base_user is None:
        directory, name = root_owned_target(host.path(ref.path), lambda _message: None)
        try:
            return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), name
        except FileNotFoundError:
            return None
    base_user = host.base_user(ref.base_user)
    parts = writer.split_relative(ref.relative or "")
    try:
        home_fd = os.open(host.home(base_user), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        owner = writer.Owner(base_user.uid, base_user.gid) if host.can_chown else None
        try:
            dir_fd, _ = writer.walk_dirs(
                home_fd,
                parts[:-1],
                create=(lambda _i: 0o755) if create else None,
                owner=owner,
                where=f"~{base_user.name}",
            )
        except FileNotFoundError:
            return None
        return dir_fd, parts[-1]
    finally:
        os.close(home_fd)


# -- writing back -------------------------------------------------------------------------------


class FileMoved(ValueError):
    """The file changed between the rollback's check and its write; nothing was written."""


def restore(host: Host, ref: FileRef, wanted: FileState, expected: FileState, log: Log) -> None:
    """Make ``ref`` what ``wanted`` says (its bytes, mode and owner, or no file), through the
    same locked, atomic, symlink-safe writer apply uses; only if it is still ``expected``.

    The check runs once the writers' lock (the temp file; ``passwd.cdb.tmp`` for a table) is
    held, so a ``vadduser`` or a Courier password change in between is never overwritten.
    """
    opened = _open_parent(host, ref, create=wanted.exists)
    if opened is None:
        if wanted.exists:
            raise FileNotFoundError(errno.ENOENT, f"{ref.path}: its directory does not exist")
        return
    dir_fd, name = opened
    where = os.path.dirname(ref.path)

    def unchanged() -> None:
        if not state_at(dir_fd, name).same_as(expected):
            raise FileMoved(f"{ref.path} changed while the rollback was running; nothing written to it")

    tmpname = temp_name(ref, name)
    try:
        if wanted.type == "file" and wanted.data is not None:
            owner = None
            if host.can_chown and wanted.uid is not None and wanted.gid is not None:
                owner = writer.Owner(wanted.uid, wanted.gid)
            writer.write_file_at(
                dir_fd,
                name,
                wanted.data,
                mode=wanted.mode if wanted.mode is not None else 0o644,
                owner=owner,
                where=where,
                tmpname=tmpname,
                log=log,
                precheck=unchanged,
            )
        elif not wanted.exists:
            _remove_locked(dir_fd, name, tmpname, where, log, unchanged)
    finally:
        os.close(dir_fd)


def temp_name(ref: FileRef, name: str) -> str:
    """The writers' temp file (their lock) for ``name``: VMailMgr's ``passwd.cdb.tmp`` for a
    table, `atomic`'s default for anything else."""
    return f"{name}.tmp" if ref.kind == TABLE else f".{name}.vmreconcile-tmp"


def clear_leftover_temp(host: Host, ref: FileRef, log: Log) -> None:
    """Remove the temp file a killed run may have left beside ``ref`` (once nobody holds it).

    A run killed right after removing a file leaves its temp file, and no later run needs to
    write that file again; for a table the leftover would block VMailMgr's own tools.
    """
    try:
        opened = _open_parent(host, ref, create=False)
    except (OSError, LookupError):
        return
    if opened is None:
        return
    dir_fd, name = opened
    try:
        tmpname = temp_name(ref, name)
        if writer.file_info(dir_fd, tmpname) is None:
            return
        fd = writer.acquire_temp(dir_fd, tmpname, where=f"{os.path.dirname(ref.path)}/{tmpname}", log=log)
        os.unlink(tmpname, dir_fd=dir_fd)
        os.close(fd)
    except OSError as exc:
        log(f"{ref.path}: could not clear its temp file ({exc.strerror or exc})")
    finally:
        os.close(dir_fd)


def _remove_locked(dir_fd: int, name: str, tmpname: str, where: str, log: Log, precheck: Callable[[], None]) -> None:
    """Remove ``name`` while holding the writers' temp-file lock (as a write would)."""
    fd = writer.acquire_temp(dir_fd, tmpname, where=f"{where}/{tmpname}", log=log)
    try:
        precheck()
        checkpoint(f"{name}: temp created")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
        checkpoint(f"{name}: removed")
        os.fsync(dir_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmpname, dir_fd=dir_fd)
        os.close(fd)
