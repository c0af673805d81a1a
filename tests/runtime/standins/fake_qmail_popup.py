"""A stand-in for qmail-popup (notqmail), enough to replay pop3-sessions.txt.

``fake_qmail_popup.py HOST checkpassword subprogram...``: greets with ``+OK <PID.TIME@HOST>``,
takes USER/PASS (and QUIT) on stdin, then runs ``checkpassword subprogram...`` with
``user\\0pass\\0timestamp\\0`` on fd 3, exactly like qmail-popup's ``doanddie``: a non-zero
exit of the checkpassword program is ``-ERR authorization failed``; afterwards it always
exits 1. stdin is read one byte at a time so nothing meant for the subprogram is swallowed.
"""

import os
import signal
import sys
import time


def out(text: str) -> None:
    os.write(1, text.encode() + b"\r\n")


def read_line() -> bytes | None:
    line = b""
    while True:
        ch = os.read(0, 1)
        if not ch:
            return None
        if ch == b"\n":
            return line.rstrip(b"\r")
        line += ch


def doanddie(user: bytes, password: bytes, timestamp: str, child: list[str]) -> None:
    r, w = os.pipe()
    pid = os.posix_spawnp(
        child[0], child, dict(os.environ), file_actions=[(os.POSIX_SPAWN_DUP2, r, 3)], setsigdef=(signal.SIGPIPE,)
    )
    os.close(r)
    os.write(w, user + b"\0" + password + b"\0" + timestamp.encode() + b"\0")
    os.close(w)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        out("-ERR aack, child crashed")
    elif os.WEXITSTATUS(status):
        out("-ERR authorization failed")
    sys.exit(1)


def main() -> None:
    host, child = sys.argv[1], sys.argv[2:]
    timestamp = f"<{os.getpid()}.{int(time.time())}@{host}>"
    out("+OK " + timestamp)
    user = None
    while True:
        line = read_line()
        if line is None:
            sys.exit(1)
        verb, _, arg = line.partition(b" ")
        verb = verb.upper()
        if verb == b"QUIT":
            out("+OK ")
            sys.exit(0)
        elif verb == b"USER":
            user = arg
            out("+OK ")
        elif verb == b"PASS" and user is not None:
            doanddie(user, arg, timestamp, child)
        else:
            out("-ERR authorization first")


main()
