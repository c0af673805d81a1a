"""A stand-in for qmail-pop3d (notqmail): STAT, LIST, UIDL, TOP, RETR, NOOP, QUIT on a maildir.

``fake_qmail_pop3d.py MAILDIR`` runs after checkvpw, as the base user in its home. Like
qmail-pop3d it first moves ``new/`` messages to ``cur/`` (adding ``:2,``), sizes are the
file sizes, UIDs are the file names up to ``:``, and a message is sent as CRLF lines,
dot-stuffed, followed by ``\\r\\n.\\r\\n``. Anything it cannot do is ``-ERR``.
"""

import os
import sys


def out(text: bytes) -> None:
    os.write(1, text)


def main() -> None:
    maildir = sys.argv[1]
    try:
        os.chdir(maildir)
    except OSError:
        out(b"-ERR this user has no $HOME/Maildir\r\n")
        sys.exit(1)
    for name in sorted(os.listdir("new")):
        os.rename(os.path.join("new", name), os.path.join("cur", name + ":2,"))
    messages = []
    for name in sorted(os.listdir("cur")):
        path = os.path.join("cur", name)
        messages.append((path, name.split(":")[0], os.stat(path).st_size))
    out(b"+OK \r\n")  # qmail-pop3d greets once it runs: this answers the client's PASS
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            sys.exit(0)
        parts = line.strip().split()
        verb = parts[0].upper() if parts else b""
        args = parts[1:]
        if verb == b"QUIT":
            out(b"+OK \r\n")
            sys.exit(0)
        elif verb == b"NOOP":
            out(b"+OK \r\n")
        elif verb == b"STAT":
            out(b"+OK %d %d\r\n" % (len(messages), sum(m[2] for m in messages)))
        elif verb in (b"LIST", b"UIDL") and not args:
            out(b"+OK \r\n")
            for number, (_path, uid, size) in enumerate(messages, 1):
                out(b"%d %s\r\n" % (number, uid.encode() if verb == b"UIDL" else b"%d" % size))
            out(b".\r\n")
        elif verb in (b"TOP", b"RETR") and args and args[0].isdigit() and 0 < int(args[0]) <= len(messages):
            limit = int(args[1]) if verb == b"TOP" and len(args) > 1 else -1
            with open(messages[int(args[0]) - 1][0], "rb") as fp:
                text = fp.read()
            out(b"+OK \r\n")
            in_header = True
            for raw in text.split(b"\n")[:-1] if text.endswith(b"\n") else text.split(b"\n"):
                if not in_header:
                    if limit == 0:
                        break
                    limit -= 1
                elif raw == b"":
                    in_header = False
                out((b"." if raw.startswith(b".") else b"") + raw + b"\r\n")
            out(b"\r\n.\r\n")
        else:
            out(b"-ERR unimplemented\r\n")


main()
