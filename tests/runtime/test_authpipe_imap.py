"""An IMAP session through Debian's real courier-imap, authenticated by our authpipe.

courier-imap pulls in an MTA and courier-base, so it is not installed: its binaries are
unpacked beside the system instead (``apt-get download courier-imap libcourier-unicode4
libidn12 libgamin0``, then ``dpkg -x`` each into one directory). The directory is
``$VMR_COURIER_IMAP_DIR`` if set, else ``/opt/vmr-courier-imap``, which the test fills itself
(as root, through apt's ordinary client) the first time; without network or apt it is skipped.

``imaplogin`` runs inside the private authdaemond's mount namespace with the connection on
stdin/stdout (as couriertcpd would run it), asks authdaemond -> authpipe, then becomes the
base user and execs ``imapd`` on the maildir authpipe returned.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import FIXTURES
from test_authpipe_support import AUTHDAEMOND, DOMAIN, LIBAUTHPIPE, authdaemond, domain

IMAP_DIR = Path(os.environ.get("VMR_COURIER_IMAP_DIR", "/opt/vmr-courier-imap"))
IMAPLOGIN = IMAP_DIR / "usr/lib/courier/courier/imaplogin"
IMAPD = IMAP_DIR / "usr/bin/imapd"
DEBS = ("courier-imap", "libcourier-unicode4", "libidn12", "libgamin0")


def _unpack_courier_imap() -> str | None:
    """Fill IMAP_DIR with dpkg -x of the packages; None when done, else why it could not be."""
    if IMAPLOGIN.exists() and IMAPD.exists():
        return None
    if "VMR_COURIER_IMAP_DIR" in os.environ:
        return f"courier-imap is not unpacked in {IMAP_DIR} (VMR_COURIER_IMAP_DIR)"
    if os.geteuid() != 0 or not shutil.which("apt-get") or not shutil.which("dpkg"):
        return "courier-imap is not unpacked and apt-get/dpkg (as root) are not available"
    with tempfile.TemporaryDirectory(prefix="vmr-courier-imap-", dir=IMAP_DIR.parent) as tmp:
        os.chmod(tmp, 0o755)  # apt's _apt user writes the downloads here
        got = subprocess.run(["apt-get", "download", *DEBS], cwd=tmp, capture_output=True, text=True, timeout=180)
        debs = sorted(Path(tmp).glob("*.deb"))
        if got.returncode != 0 or len(debs) != len(DEBS):
            return f"apt-get download {' '.join(DEBS)} failed: {got.stderr.strip()[-300:]}"
        staging = Path(tmp) / "tree"
        for deb in debs:
            subprocess.run(["dpkg", "-x", str(deb), str(staging)], check=True, timeout=60)
        staging.chmod(0o755)
        with contextlib.suppress(OSError):  # someone else unpacked it meanwhile
            os.rename(staging, IMAP_DIR)
    return None if IMAPLOGIN.exists() else f"unpacking courier-imap into {IMAP_DIR} failed"


pytestmark = [
    pytest.mark.root,
    pytest.mark.peers,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespace, setuid); CI runs as root"),
    pytest.mark.skipif(
        not (os.path.exists(AUTHDAEMOND) and os.path.exists(LIBAUTHPIPE) and shutil.which("nsenter")),
        reason="needs Debian's courier-authdaemon and courier-authlib-pipe packages",
    ),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def courier_imap() -> Path:
    problem = _unpack_courier_imap()
    if problem:
        pytest.skip(problem)
    return IMAP_DIR


class Session:
    """A line-by-line IMAP conversation with imaplogin/imapd over pipes."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buffer = b""
        self.greeting = self.until(b"* OK")

    def until(self, marker: bytes, timeout: float = 20) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            for line in self.buffer.split(b"\r\n")[:-1]:
                if line.startswith(marker):
                    end = self.buffer.index(line) + len(line) + 2
                    text, self.buffer = self.buffer[:end], self.buffer[end:]
                    return text.decode(errors="replace")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {marker!r} in {self.buffer!r}")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"connection closed before {marker!r}: {self.buffer!r}")
                self.buffer += chunk

    def command(self, tag: str, text: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{tag} {text}\r\n".encode())
        self.proc.stdin.flush()
        return self.until(tag.encode() + b" ")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_imap_login_through_courier_imap(courier_imap: Path) -> None:
    with domain("vmrimap") as dom, authdaemond(dom) as courier:
        message = (FIXTURES / "messages" / "small.eml").read_bytes()
        maildir = dom.home / "users" / "me"
        before = len(list((maildir / "new").iterdir())) + len(list((maildir / "cur").iterdir()))
        new = maildir / "new" / "1795546400.1.mx.oracle.test"
        new.write_bytes(message)
        os.chown(new, dom.uid, dom.gid)
        env = {
            "PATH": "/usr/bin:/bin",
            "LD_LIBRARY_PATH": str(IMAP_DIR / "usr/lib/x86_64-linux-gnu"),
            "TCPREMOTEIP": "127.0.0.1",
            "TCPLOCALIP": "127.0.0.1",
            "IMAP_CAPABILITY": "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE",
            "IMAP_PROXY": "0",
            "IMAP_MAILBOX_SANITY_CHECK": "1",
            "IMAP_USELOCKS": "0",  # without gam_server each lock wait costs 1.2 s
        }
        argv = [
            "nsenter",
            "--mount",
            f"--target={courier.pid}",
            "env",
            "-i",
            *(f"{k}={v}" for k, v in env.items()),
            str(IMAPLOGIN),
            str(IMAPD),
            "Maildir",
        ]
        session = Session(argv)
        try:
            assert "Courier-IMAP ready" in session.greeting
            login = session.command("a1", f'LOGIN "me@{DOMAIN}" "secret"')
            assert "a1 OK" in login, login
            selected = session.command("a2", "SELECT INBOX")
            assert f"* {before + 1} EXISTS" in selected and "a2 OK" in selected, selected
            fetched = session.command("a3", "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            subject = next(line for line in message.decode().splitlines() if line.lower().startswith("subject:"))
            assert subject in fetched, fetched
            assert "a4 OK" in session.command("a4", "LOGOUT")
        finally:
            session.close()
        imapd_log = session.proc.stderr.read().decode(errors="replace") if session.proc.stderr else ""
        assert f"LOGIN, user=me@{DOMAIN}" in imapd_log, imapd_log
        authlog = courier.log.read_text()
        assert f"sysuserid={dom.uid}" in authlog and "maildir=./users/me" in authlog
