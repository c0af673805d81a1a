"""pop3-sessions.txt replayed: qmail-popup stand-in -> our checkvpw -> qmail-pop3d stand-in.

The stand-ins (tests/runtime/standins/) behave like notqmail's programs where the
transcripts can see it; the part under test is checkvpw between them: fd-3 data from the
popup, the setuid, the maildir argument rewrite and the exit code the popup turns into
``-ERR authorization failed``. Each case's server lines must equal the recorded ones, with
the PID/TIME of the greeting and the UIDL names masked as in the fixture.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from loginkit import FIXTURES, create_world, destroy_world

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="checkvpw must start as root (setuid); CI runs as root"),
]

STANDINS = Path(__file__).resolve().parent / "standins"
#: The delivered messages the sessions read (Return-Path + Delivered-To + small.eml, as
#: qmail-local wrote them in step 11); sizes 274 and 279 as in the transcripts.
MESSAGES = {
    "users/alice/cur/1795546461.46461.vm:2,": "vbase1-alice@mydomain.org",
    "users/Henry:Ford/cur/1795546463.46463.vm:2,": "vbase1-Henry.Ford@mydomain.org",
}


@dataclass
class Session:
    name: str
    client: list[str]
    server: list[str]
    exit: int


def parse_sessions() -> list[Session]:
    sessions: list[Session] = []
    for block in (FIXTURES / "pop3-sessions.txt").read_text().split("=== case: ")[1:]:
        lines = block.split("\n")
        sent = next(line for line in lines if line.startswith("client sends"))
        words = sent.split(": ", 1)[1].split(" ")
        client, index = [], 0
        while index < len(words):  # rebuild commands: a verb and its arguments
            verb = words[index]
            count = {"USER": 1, "PASS": 1, "TOP": 2}.get(verb, 0)
            client.append(" ".join(words[index : index + 1 + count]))
            index += 1 + count
        server = [line[len("server: ") :] for line in lines if line.startswith("server: ")]
        code = int(next(line for line in lines if line.startswith("exit: ")).split(": ")[1])
        sessions.append(Session(lines[0].strip(), client, server, code))
    return sessions


SESSIONS = parse_sessions()


@pytest.fixture(scope="module")
def world():
    made = create_world(programs=("checkvpw",))
    small = (FIXTURES / "messages" / "small.eml").read_bytes()
    for rel, delivered_to in MESSAGES.items():
        path = made.home / rel
        path.write_bytes(b"Return-Path: <sender@example.net>\nDelivered-To: " + delivered_to.encode() + b"\n" + small)
        os.chown(path, made.uid, made.gid)
    bindir = made.root / "standins"
    bindir.mkdir()
    for name in ("fake_qmail_popup.py", "fake_qmail_pop3d.py"):
        shutil.copy(STANDINS / name, bindir / name)
        (bindir / name).chmod(0o755)
    made.standins = bindir
    yield made
    destroy_world(made)


def mask(line: str) -> str:
    line = re.sub(r"^\+OK <\d+\.\d+@", "+OK <PID.TIME@", line)
    return re.sub(r"^(\d+) \d+\.\d+\.\w+$", r"\1 <TIME.PID.HOST>", line)


def replay(world, session: Session) -> tuple[list[str], int]:
    """Run the popup -> checkvpw -> pop3d chain as root with ``env -i PATH=...``."""
    argv = [
        sys.executable,
        "-I",
        "-S",
        str(world.standins / "fake_qmail_popup.py"),
        "mx.oracle.test",
        world.launcher("checkvpw"),
        "/usr/bin/python3",
        "-I",
        "-S",
        str(world.standins / "fake_qmail_pop3d.py"),
        "Maildir",
    ]
    stdin = "".join(line + "\r\n" for line in session.client).encode()
    done = subprocess.run(argv, input=stdin, capture_output=True, env={"PATH": "/usr/bin:/bin"}, timeout=30)
    text = done.stdout.decode()
    assert text.endswith("\r\n") and not done.stderr, (text, done.stderr)
    return [mask(line) for line in text[:-2].split("\r\n")], done.returncode


@pytest.mark.parametrize("session", SESSIONS, ids=[s.name for s in SESSIONS])
def test_pop3_session_transcript(world, session):
    server, code = replay(world, session)
    assert server == session.server
    assert code == session.exit


def test_the_session_uses_the_maildir_checkvpw_chose(world):
    """The pop3d child got ``./users/me`` for ``Maildir``: it moved me's new mail to cur/."""
    new = world.home / "users" / "me" / "new"
    for old in list(new.iterdir()) + list((world.home / "users" / "me" / "cur").iterdir()):
        old.unlink()
    (new / "1.2.test").write_text("Subject: x\n\nbody\n")
    os.chown(new / "1.2.test", world.uid, world.gid)
    server, code = replay(world, Session("me", ["USER me@mydomain.org", "PASS secret", "STAT", "QUIT"], [], 1))
    assert server[2:] == ["+OK ", "+OK 1 17", "+OK "] and code == 1
    moved = world.home / "users" / "me" / "cur" / "1.2.test:2,"
    assert moved.exists()
