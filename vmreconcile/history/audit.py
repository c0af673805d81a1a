"""The audit trail: one syslog line per apply and rollback, with the standard library only.

The line is one datagram to the syslog socket (``/dev/log``, journald's on Debian; under
``--root`` the same path inside the root, which is how the tests listen on a real socket)::

    <85>vmreconcile[4242]: apply 7 by alice: +1 ~2 -0 (config 0123456789ab, commit 5f3e...)
    <85>vmreconcile[4243]: rollback 8 by alice: +0 ~2 -1 (undoes 7)

Priority 85 is facility ``authpriv`` with severity ``notice``, where sudo logs too: the
journal keeps it, rsyslog writes it to the root-only ``/var/log/auth.log``. No timestamp or
host name is sent; the syslog daemon adds them, as for Python's ``SysLogHandler``. A socket
path longer than ``AF_UNIX`` allows is reached through ``/proc/self/fd``. Failing to send never
fails the apply: the caller says so once on stderr.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

from ..printable import printable

#: LOG_AUTHPRIV (10) * 8 + LOG_NOTICE (5).
PRIORITY = 10 * 8 + 5
IDENT = "vmreconcile"
#: Bytes of a sockaddr_un path (108 with its NUL on Linux); longer paths go through /proc.
_SUN_PATH_MAX = 107


def audit_line(entry: Mapping[str, object]) -> str:
    """The message of an entry: ``apply 7 by alice: +1 ~2 -0 (config ..., commit ...)``.

    One line, whatever the entry holds: ``SUDO_USER`` (set by whoever runs sudo) and anything
    else in it has its control characters escaped (`printable`), so a newline cannot forge a
    second audit record and an ESC cannot reach whoever reads the log on a terminal."""
    summary = entry.get("summary")
    counts = summary if isinstance(summary, Mapping) else {}
    head = (
        f"{entry.get('command', 'apply')} {entry.get('id')} by {entry.get('user', '?')}: "
        f"+{counts.get('add', 0)} ~{counts.get('change', 0)} -{counts.get('destroy', 0)}"
    )
    if entry.get("rollback_of") is not None:
        details = [f"undoes {entry['rollback_of']}"]
    else:
        digest = entry.get("config_digest")
        details = [f"config {str(digest)[:12] if digest else 'unknown'}"]
        if entry.get("commit"):
            details.append(f"commit {entry['commit']}{'-dirty' if entry.get('commit_dirty') else ''}")
    tail = "" if entry.get("outcome") in (None, "complete") else f" {entry.get('outcome')}"
    return printable(f"{head} ({', '.join(details)}){tail}")


def send(socket_path: Path, message: str) -> str | None:
    """Send one line to the syslog socket; the reason when it could not be sent, else None."""
    datagram = f"<{PRIORITY}>{IDENT}[{os.getpid()}]: {message}".encode("utf-8", "backslashreplace")
    path = str(socket_path)
    dir_fd = None
    try:
        if len(os.fsencode(path)) > _SUN_PATH_MAX:
            dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            path = f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            sock.connect(path)
            sock.send(datagram)
    except OSError as exc:
        return f"{socket_path}: {exc.strerror or exc}"
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    return None
