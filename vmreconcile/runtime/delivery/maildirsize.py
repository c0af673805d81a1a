"""Mailbox usage for the limits vdeliver enforces, kept in maildir++'s ``maildirsize`` file.

VMailMgr stores ``hard_quota``, ``soft_quota``, ``message_size_limit`` and
``message_count_limit`` but enforces none of them [compat: fields]. Walking a mailbox on every delivery
is too slow for big mailboxes, so usage is read from ``<maildir>/maildirsize`` (the maildir++
format Courier and Dovecot also read): a first line with the quota definition
(``<bytes>S,<count>C``, 0 = no limit), then lines ``<bytes> <count>`` that add up.

POP3 and IMAP servers often delete mail without touching that file, so its figure is only
trusted when it is *fresh*: the file exists, is at most 5120 bytes, its first line is the
definition we would write (or the same limits as
Dovecot spells them), every line parses, the sums are not negative, and neither ``new/``
nor ``cur/`` was modified after it. Otherwise it is recomputed by a walk. And a delivery is
never bounced on a remembered figure: before a bounce, usage is always recomputed.
"""

from __future__ import annotations

import os

from .maildir import unique_name, unlink_quietly

MAILDIRSIZE = "maildirsize"
#: maildir++: a maildirsize larger than this is recomputed (and so rewritten as one line).
MAX_SIZE_FILE = 5120


def size_in_name(name: str) -> int | None:
    """The ``,S=<bytes>`` maildir++ size in a message file name, or None (no ``re``: start-up)."""
    start = name.find(",S=")
    if start < 0:
        return None
    start += 3
    end = start
    while end < len(name) and "0" <= name[end] <= "9":
        end += 1
    return int(name[start:end]) if end > start else None


class Usage:
    """Bytes and messages in a mailbox; ``fresh`` is True when counted by a walk just now."""

    __slots__ = ("bytes", "count", "fresh")

    def __init__(self, size: int, count: int, fresh: bool) -> None:
        self.bytes = size
        self.count = count
        self.fresh = fresh

    def __repr__(self) -> str:
        return f"Usage(bytes={self.bytes}, count={self.count}, fresh={self.fresh})"


def quota_definition(hard_quota: int | None, count_limit: int | None) -> str:
    """The maildir++ first line for these limits (0 means "no limit" there)."""
    return f"{hard_quota or 0}S,{count_limit or 0}C"


def same_limits(first_line: str, definition: str) -> bool:
    """True when a ``maildirsize`` first line states the limits of ``definition``.

    Writers spell "no limit" differently: Dovecot's maildir quota and Courier leave a zero part
    out (``1000000S``), we write it (``1000000S,0C``). Comparing the text would make vdeliver
    and Dovecot rewrite each other's file on every delivery.
    """

    def limits(text: str) -> dict[str, str] | None:
        parts: dict[str, str] = {}
        for part in text.strip().split(","):
            if len(part) < 2 or part[-1] not in "SC" or not part[:-1].isdigit():
                return None
            if int(part[:-1]):
                parts[part[-1]] = str(int(part[:-1]))
        return parts

    ours = limits(definition)
    return ours is not None and limits(first_line) == ours


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def read_usage(maildir: str, definition: str) -> Usage | None:
    """The figure in ``maildirsize`` if it is fresh (see module doc), else None."""
    path = os.path.join(maildir, MAILDIRSIZE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if info.st_size > MAX_SIZE_FILE:
            return None
        raw = os.read(fd, MAX_SIZE_FILE + 1)
    finally:
        os.close(fd)
    newest = max(_mtime_ns(os.path.join(maildir, "new")), _mtime_ns(os.path.join(maildir, "cur")))
    if newest > info.st_mtime_ns:
        return None
    lines = raw.decode("ascii", "replace").split("\n")
    if not same_limits(lines[0], definition) or lines[-1] != "":
        return None
    size = count = 0
    for line in lines[1:-1]:
        parts = line.split()
        if len(parts) != 2:
            return None
        try:
            size += int(parts[0])
            count += int(parts[1])
        except ValueError:
            return None
    if size < 0 or count < 0:
        return None
    return Usage(size, count, fresh=False)


def _folders(maildir: str) -> list[str]:
    """The mailbox itself and its maildir++ subfolders (``.Name`` directories)."""
    folders = [maildir]
    try:
        with os.scandir(maildir) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.name not in (".", "..") and entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
    except OSError:
        pass
    return folders


def walk_usage(maildir: str) -> Usage:
    """Count every message in ``new/`` and ``cur/`` of the mailbox and its folders."""
    size = count = 0
    for folder in _folders(maildir):
        for sub in ("new", "cur"):
            try:
                entries = os.scandir(os.path.join(folder, sub))
            except OSError:
                continue
            with entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    named = size_in_name(entry.name)
                    if named is not None:
                        size += named
                    else:
                        try:
                            size += entry.stat(follow_symlinks=False).st_size
                        except OSError:
                            continue  # deleted while we looked: it no longer counts
                    count += 1
    return Usage(size, count, fresh=True)


def recompute(maildir: str, definition: str) -> Usage:
    """Walk the mailbox and replace ``maildirsize`` with the result (best effort)."""
    usage = walk_usage(maildir)
    text = f"{definition}\n{usage.bytes:>12} {usage.count:>12}\n".encode("ascii")
    tmp = os.path.join(maildir, "tmp", unique_name(len(text)))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, text)
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(maildir, MAILDIRSIZE))
    except OSError:
        unlink_quietly(tmp)
    return usage


def current_usage(maildir: str, definition: str) -> Usage:
    """Fresh ``maildirsize`` figure, or a recomputed one."""
    return read_usage(maildir, definition) or recompute(maildir, definition)


def record_delivery(maildir: str, size: int, count: int = 1) -> None:
    """Append ``<size> <count>`` after a delivery (``O_APPEND``: safe with parallel writers).

    A missing file is not created: the next check recomputes it.
    """
    try:
        fd = os.open(os.path.join(maildir, MAILDIRSIZE), os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, f"{size} {count}\n".encode("ascii"))
    except OSError:
        pass
    finally:
        os.close(fd)
