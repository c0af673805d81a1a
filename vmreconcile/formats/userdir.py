"""Where VMailMgr puts a user's mailbox: ``userdir()`` of ``lib/vdomain/userdir.cc`` ([compat: userdir])."""

from __future__ import annotations

import zlib

from ..model import to_bytes

#: Linux's limits for one path component and a whole path (with its NUL): a mailbox whose path
#: is longer cannot be made or opened by anybody, so plan refuses it instead of apply failing.
NAME_MAX = 255
PATH_MAX = 4096


def userdir(name: str, user_dir: str = "users/", bits: int = 0, slices: int = 0) -> str:
    """``user-dir`` + hashed slices + the name with every '.' turned into ':'.

    No ``./`` prefix: vadduser adds one, vsetup and aliases do not ([compat: entry-shapes]).
    """
    if not (0 <= bits <= 32 and 0 <= slices <= 32):  # plan's preflight refuses such options first
        raise ValueError(f"user-dir-bits {bits} / user-dir-slices {slices}: each must be 0 to 32")
    if not user_dir.endswith("/"):
        user_dir += "/"
    path = user_dir
    if bits and slices:
        h = zlib.crc32(to_bytes(name))
        mask = (1 << bits) - 1
        width = (bits + 3) // 4
        for _ in range(slices):
            path += format(h & mask, f"0{width}x") + "/"
            h >>= bits
    return path + name.replace(".", ":")


def relative_path_problem(path: str) -> str | None:
    """Why ``path`` is not a path inside a base user's home that can be made there, or None.

    Relative, no ``..`` component (it would step out of the home), no NUL, every component at
    most `NAME_MAX` bytes. Pure: where the home is and how long its own path is are the
    caller's to add (`PATH_MAX`).
    """
    if path.startswith("/"):
        return "is absolute: vmreconcile makes mailboxes only inside the base user's home"
    if "\0" in path:
        return "contains a NUL byte"
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        return "has a '..' component: it would leave the base user's home"
    for part in parts:
        if len(to_bytes(part)) > NAME_MAX:
            return f"has a component of {len(to_bytes(part))} bytes (at most {NAME_MAX})"
    return None
