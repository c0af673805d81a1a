"""``/var/lib/vmreconcile``: the directory of vmreconcile's own state, checked before every use.

It holds the apply history (old tables with their password hashes) and the plan key (whoever
can replace it can sign plans). Both are checked on their own (the history directory 0700 and
ours, the key 0600 and ours), but a symlinked or foreign ``/var/lib/vmreconcile`` would put
both wherever its owner likes: the history would be written to, and read from, a place another
user controls. So the directory itself must be a real directory (never a symlink), owned by
the user running vmreconcile (root on a mail host) and writable by nobody else; it is made
0700 when missing, and a directory others can read (one made by an installer with 0755) is
tightened to 0700. Anything else is refused, naming the directory, and nothing is written.

Under ``--root DIR`` the same rule holds for ``DIR/var/lib/vmreconcile``; ``DIR`` and its
parents are reached as they are (their symlinks followed): ``--root`` names a tree the user
running vmreconcile trusts, so it must be one that only that user (and root) can change.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from .host import Host

STATE_DIR = "/var/lib/vmreconcile"


class StateDirError(OSError):
    """The state directory is not one vmreconcile may use; the message names it."""


def state_dir(host: Host, *, create: bool, purpose: str) -> str | None:
    """The checked state directory of ``host`` (see the module docs); None when it does not
    exist and ``create`` is false. ``purpose`` ("the plan key", "the history") names what
    would have been kept there in the error."""
    path = host.fspath(STATE_DIR)
    if create:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    euid = os.geteuid()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a directory"
        raise StateDirError(
            errno.ENOTDIR, f"{path}: is {what}; it must be a real directory; refusing to keep {purpose} there"
        )
    if info.st_uid != euid or info.st_mode & 0o022:
        raise StateDirError(
            errno.EPERM,
            f"{path}: must be a directory owned by uid {euid} that nobody else can write (it is uid "
            f"{info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o}); refusing to keep {purpose} there",
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
