"""Where VMailMgr puts a user's mailbox: ``userdir()`` of ``lib/vdomain/userdir.cc`` ([compat: userdir])."""

from __future__ import annotations

import zlib

from ..model import to_bytes


def userdir(name: str, user_dir: str = "users/", bits: int = 0, slices: int = 0) -> str:
    """``user-dir`` + hashed slices + the name with every '.' turned into ':'.

    No ``./`` prefix: vadduser adds one, vsetup and aliases do not ([compat: entry-shapes]).
    """
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
