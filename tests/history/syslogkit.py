"""A real syslog socket for the tests: an ``AF_UNIX`` datagram listener bound where the audit
line goes (``ROOT/dev/log`` under ``--root``), reached through ``/proc/self/fd`` when the path is
longer than ``AF_UNIX`` allows (pytest's temporary directories can be)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

#: What every audit line looks like on the wire (authpriv.notice = 85).
LINE = re.compile(
    r"<85>vmreconcile\[(?P<pid>\d+)\]: (?P<command>apply|rollback) (?P<id>\d+) by (?P<user>\S+): "
    r"\+(?P<add>\d+) ~(?P<change>\d+) -(?P<destroy>\d+) \((?P<details>[^)]*)\)(?P<tail>.*)"
)


class SyslogListener:
    """Receives the datagrams sent to ``path`` (created here, removed on close)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.dir_fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(f"/proc/self/fd/{self.dir_fd}/{path.name}")
        self.sock.setblocking(False)

    def lines(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(65536).decode("utf-8"))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()
        os.close(self.dir_fd)
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> SyslogListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
