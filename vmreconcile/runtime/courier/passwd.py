"""authpipe's PASSWD: change an unmanaged virtual user's password, as the base user, atomically.

Only users listed in ``/etc/vmailmgr/vmreconcile-passwd-changeable`` (``<base>/<key>`` lines,
written by ``apply`` for users whose YAML password is ``unmanaged``) may change their password
this way; for every other user the YAML is the source of truth and a change here would be
undone by the next ``apply``, so it is refused and the reason logged.

The write happens in a forked child that has dropped to the base user (supplementary groups
cleared, umask 077) before touching the base user's directory, so root never writes into a
directory its owner controls. The table is rebuilt the way VMailMgr and ``apply`` do it:

* ``passwd.cdb.tmp`` is created with ``O_EXCL|O_NOFOLLOW``: it is the lock [compat: table-files]. As in
  ``apply`` (whose module the runtime may not import): an exclusive ``flock`` is held on it
  while writing; another writer's temp file is waited for (at most `TEMP_TIMEOUT`); one that
  nobody holds and that has not changed for `STALE_AFTER` seconds is a crash's leftover and is
  removed, and a symlink in its place is removed at once;
* the table is re-read under that lock and the old password checked again, so a change made
  by someone else in the meantime is never overwritten;
* every record keeps its bytes and its place; only the changed one is re-encoded (v2);
* the new hash uses the scheme of the old one (``$1$``, ``$5$``, ``$6$``, ``$2b$``, ``$y$``), or
  yescrypt when the old one was plaintext ``$0$``, old MD5, DES or unknown;
* data fsync, rename over ``passwd.cdb``, directory fsync. The ``.tmp`` is removed on failure
  and never after a successful rename (VMailMgr's unlink-after-rename race).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path

from ...formats.cdb import build_cdb
from ...formats.config import PASSWD_CHANGEABLE
from ...formats.hashing import DEFAULT_SCHEME, SCHEMES, HashingError, hash_password, scheme_of, verify_password
from ...formats.vpwentry import decode_record, encode_record, user_key
from ...host import BaseUser
from ...tables import STALE_AFTER, clear_stale_temp, open_table, write_all
from ..login import core
from .directory import Directory, Refused

#: Seconds after which an unlocked ``passwd.cdb.tmp`` is a crash's leftover (as in ``apply``).
#: How long to wait for another writer's ``passwd.cdb.tmp``; authdaemond's client waits 30 s.
TEMP_TIMEOUT = 10.0

MSG_MANAGED = f"password is managed by vmreconcile (not listed in /etc/vmailmgr/{PASSWD_CHANGEABLE})"


class PasswdError(Exception):
    """The table could not be changed; the message is logged by the child."""


def check_new_password(new: str) -> None:
    """Refuse passwords VMailMgr refuses too [compat: hashing]: empty, or holding CR, LF or NUL."""
    if not new:
        raise Refused("the new password is empty")
    if any(c in new for c in "\r\n\0"):
        raise Refused("the new password contains CR, LF or NUL")


def new_hash(new: str, old_stored: str) -> str:
    """A hash of ``new`` in the old hash's scheme when that is a crypt scheme, else yescrypt."""
    scheme = scheme_of(old_stored)
    return hash_password(new, scheme if scheme in SCHEMES else DEFAULT_SCHEME)


def _log(text: str) -> None:
    sys.stderr.write(f"authpipe: {text}\n")


def acquire_temp(dir_fd: int, tmpname: str) -> int:
    """Create ``tmpname`` with ``O_EXCL|O_NOFOLLOW`` and flock it, as ``apply`` does.

    A live writer's temp file is waited for, at most `TEMP_TIMEOUT` seconds (authdaemond's
    client gives up after 30); a stale leftover is cleared first.
    """
    deadline = time.monotonic() + TEMP_TIMEOUT
    while True:
        try:
            fd = os.open(
                tmpname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
            )
        except FileExistsError:
            if clear_stale_temp(dir_fd, tmpname, STALE_AFTER, _log):
                continue
            if time.monotonic() > deadline:
                raise PasswdError(
                    f"{tmpname} exists and another writer (vadduser, vmreconcile) is still using it; try again later"
                ) from None
            time.sleep(0.05)
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd


def rewrite_table(table: Path, virtual_name: str, old: str, new: str) -> None:
    """Replace the password of ``virtual_name`` in ``table`` (runs as the base user)."""
    name = table.name
    tmpname = name + ".tmp"
    try:
        dir_fd = os.open(table.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise PasswdError(f"cannot open {table.parent}: {exc.strerror}") from None
    fd = -1
    renamed = False
    try:
        fd = acquire_temp(dir_fd, tmpname)
        reader = open_table(table)
        if reader is None:
            raise PasswdError(f"{table} does not exist")
        key = user_key(virtual_name)
        items = list(reader.items())
        index = next((i for i, (item_key, _) in enumerate(items) if item_key == key), -1)
        if index < 0:
            raise PasswdError(f"virtual user {virtual_name!r} is no longer in {table}")
        user = decode_record(key, items[index][1])
        if not user.has_mailbox or not verify_password(old, user.password):
            raise PasswdError(f"virtual user {virtual_name!r} changed while its password was being set")
        items[index] = (key, encode_record(user.with_changes(password=new_hash(new, user.password))))
        write_all(fd, build_cdb(items))
        os.fchmod(fd, 0o600)
        os.fsync(fd)
        os.rename(tmpname, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        renamed = True
        os.fsync(dir_fd)
    except HashingError as exc:
        raise PasswdError(str(exc)) from None
    except OSError as exc:
        raise PasswdError(f"cannot write {table}: {exc}") from None
    finally:
        if fd >= 0:
            if not renamed:
                with contextlib.suppress(OSError):
                    os.unlink(tmpname, dir_fd=dir_fd)
            os.close(fd)
        os.close(dir_fd)


def _child(base: BaseUser, table: Path, virtual_name: str, old: str, new: str) -> int:
    """Body of the forked child: become the base user, rewrite, report through the exit code."""
    try:
        os.setgroups([base.gid])
        os.setgid(base.gid)
        os.setuid(base.uid)
        os.umask(0o077)
        rewrite_table(table, virtual_name, old, new)
        return 0
    except PasswdError as exc:
        sys.stderr.write(f"authpipe: PASSWD {base.name}/{virtual_name}: {exc}\n")
    except OSError as exc:
        sys.stderr.write(f"authpipe: PASSWD {base.name}/{virtual_name}: cannot become {base.name}: {exc.strerror}\n")
    except BaseException as exc:  # never let the child return into the request loop
        sys.stderr.write(f"authpipe: PASSWD {base.name}/{virtual_name}: {type(exc).__name__}: {exc}\n")
    return 1


def change_password(directory: Directory, login: str, old: str, new: str) -> None:
    """Carry out a PASSWD request; `Refused` (with the reason) when it is not done."""
    base, virtual = directory.resolve(login)
    if not virtual:
        raise Refused("PASSWD is only offered for virtual users")
    if not core.is_passwd_changeable(directory.host, base.name, virtual):
        raise Refused(MSG_MANAGED)
    directory.authenticate(login, old)
    check_new_password(new)
    table = Path(directory.table_file(base))
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, observed through the table
        code = 1
        try:
            code = _child(base, table, virtual, old, new)
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    directory.forget_table(base)
    if os.waitstatus_to_exitcode(status) != 0:
        raise Refused("the table could not be rewritten (see the message above)")
