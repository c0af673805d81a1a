"""checkvpw under a real, private Dovecot 2.3 (direct mode, examples/dovecot/), over IMAP and POP3.

One Dovecot per module and per config variant, on free 127.0.0.1 ports, with its base,
state and log directories in the world's temp root; the passdb is the real checkvpw
launcher baked to that root. Logins as ``me@mydomain.org``, ``me:mydomain.org`` and
``<base>-me`` (no domain: checkvpw falls back to the host name, because Dovecot sets no
TCPLOCALHOST; the world's locals/virtualdomains never name this host, so the login resolves
through the base-user prefix whatever the host name is) must see the messages in the maildir;
wrong password, unknown user, alias-only, expired and system-account logins must be
authentication failures, not temporary ones.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from loginkit import create_world, destroy_world


def _dovecot_version() -> str:
    if shutil.which("dovecot") is None:
        return ""
    done = subprocess.run(["dovecot", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


pytestmark = [
    pytest.mark.skipif(
        _dovecot_version()[:4] not in ("", "2.3."),
        reason="the example config is Dovecot 2.3 syntax (Debian 12); 2.4 changed it",
    ),
    pytest.mark.root,
    pytest.mark.peers,
    pytest.mark.skipif(os.geteuid() != 0, reason="Dovecot's auth must run as root for checkvpw; CI runs as root"),
    pytest.mark.skipif(
        shutil.which("dovecot") is None or not Path("/usr/lib/dovecot/checkpassword-reply").exists(),
        reason="needs Debian's dovecot-core, dovecot-imapd and dovecot-pop3d",
    ),
]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dovecot" / "vmreconcile-checkvpw.conf"
SUBJECT = "Subject: login runtime test"
DEFAULT_OVERRIDE = "  override_fields = userdb_home=%{passdb:userdb_home}/%{passdb:maildir}\n"
DEFAULT_ARGS = "  args = CHECKVPW /usr/lib/dovecot/checkpassword-reply Maildir\n"
IP_ARGS = "  #args = /usr/bin/env TCPLOCALHOST=%{lip} CHECKVPW /usr/lib/dovecot/checkpassword-reply Maildir\n"
KEEP_NAME_OVERRIDE = "  #override_fields = user=%L{orig_user} userdb_home=%{passdb:userdb_home}/%{passdb:maildir}\n"

HEADER = """\
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
listen = 127.0.0.1
protocols = imap pop3
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = dovecot
default_login_user = dovenull
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
passdb {{
  driver = passwd-file
  args = username_format=%{{rip}} {tmp}/nodelay
  default_fields = noauthenticate=y
  result_success = continue
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dovecot exited {process.returncode}: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"dovecot did not listen on {port}")


class Dovecot:
    """A private Dovecot instance; `stop` kills it and its children."""

    def __init__(self, world, keep_login_name: bool, realm: str = "", ip_domains: bool = False) -> None:
        self.tmp = world.root / f"dovecot-{keep_login_name:d}{realm}{ip_domains:d}"
        self.tmp.mkdir()
        (self.tmp / "nodelay").write_text("127.0.0.1:::::::nodelay=yes\n")
        self.imap_port, self.pop3_port = free_port(), free_port()
        example = EXAMPLE.read_text().replace("/usr/local/bin/checkvpw", "CHECKVPW")
        assert DEFAULT_OVERRIDE in example and KEEP_NAME_OVERRIDE in example
        if ip_domains:
            assert DEFAULT_ARGS in example and IP_ARGS in example
            example = example.replace(DEFAULT_ARGS, "").replace(IP_ARGS, IP_ARGS.replace("#", "", 1))
        if keep_login_name:
            example = example.replace(DEFAULT_OVERRIDE, "").replace(
                KEEP_NAME_OVERRIDE, KEEP_NAME_OVERRIDE.replace("#", "", 1)
            )
        example = example.replace("CHECKVPW", world.launcher("checkvpw"))
        self.conf = self.tmp / "dovecot.conf"
        header = HEADER.format(tmp=self.tmp, imap=self.imap_port, pop3=self.pop3_port)
        if ip_domains:
            header = header.replace("listen = 127.0.0.1", "listen = 127.0.0.1 127.0.0.2")
        if realm:
            header += f"auth_default_realm = {realm}\n"
        self.conf.write_text(header + example)
        self.log = self.tmp / "dovecot.log"
        self.process = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(self.imap_port, self.process, self.log)
            wait_port(self.pop3_port, self.process, self.log)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def put_message(world, maildir: str, subject: str) -> None:
    """Make ``maildir/new`` hold exactly one real message of the world's base user."""
    for sub in ("new", "cur"):  # the fixture tree's message files are empty placeholders
        for old in (world.home / maildir / sub).iterdir():
            old.unlink()
    new = world.home / maildir / "new"
    path = new / f"{int(time.time())}.{os.getpid()}.{subject.split()[-1]}.test"
    path.write_text(f"From: a@example.net\nTo: b@mydomain.org\n{SUBJECT} {subject}\n\nbody\n")
    os.chown(path, world.uid, world.gid)


@pytest.fixture(scope="module")
def world():
    made = create_world(programs=("checkvpw",))
    for maildir, label in (("users/me", "me"), ("users/alice", "alice"), ("users/Henry:Ford", "henry")):
        put_message(made, maildir, label)
    yield made
    destroy_world(made)


@pytest.fixture(scope="module")
def dovecot(world):
    server = Dovecot(world, keep_login_name=False)
    yield server
    server.stop()


def imap_subjects(port: int, user: str, password: str) -> list[str]:
    return imap_subjects_at("127.0.0.1", port, user, password)


def imap_subjects_at(address: str, port: int, user: str, password: str) -> list[str]:
    with imaplib.IMAP4(address, port, timeout=20) as imap:
        imap.login(user, password)
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK"
        count = int(data[0])
        subjects = []
        for number in range(1, count + 1):
            typ, fetched = imap.fetch(str(number), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert typ == "OK"
            subjects.append(fetched[0][1].decode().strip())
        imap.logout()
    return subjects


def pop3_subjects(port: int, user: str, password: str) -> list[str]:
    pop = poplib.POP3("127.0.0.1", port, timeout=20)
    try:
        pop.user(user)
        pop.pass_(password)
        count, _size = pop.stat()
        subjects = []
        for number in range(1, count + 1):
            _resp, lines, _octets = pop.top(number, 0)
            subjects += [line.decode() for line in lines if line.startswith(b"Subject:")]
    finally:
        pop.quit()
    return subjects


GOOD = [
    ("me@mydomain.org", "secret", "me"),
    ("me:mydomain.org", "secret", "me"),
    ("BASE-me", "secret", "me"),
    ("ME@MyDomain.ORG", "secret", "me"),
    ("alice@mail.mydomain.org", "alice-pass-2", "alice"),
    ("Henry.Ford@mydomain.org", "henry-pw", "henry"),  # maildir ./users/Henry:Ford
]
BAD = [
    ("me@mydomain.org", "wrong"),
    ("alice@mydomain.org", "alice-pass-1"),
    ("nosuchuser@mydomain.org", "secret"),
    ("info@mydomain.org", "*"),  # alias only
    ("dave@mydomain.org", "dave-plain"),  # expired, right password
    ("me@unknown.example", "secret"),
    ("BASE@localhost", "base-pass-1"),  # system account: off by default
]


def login_name(world, name: str) -> str:
    return name.replace("BASE", world.name)


@pytest.mark.parametrize(("name", "password", "label"), GOOD, ids=[g[0] for g in GOOD])
def test_imap_login_sees_maildir(world, dovecot, name, password, label):
    assert imap_subjects(dovecot.imap_port, login_name(world, name), password) == [f"{SUBJECT} {label}"]


@pytest.mark.parametrize(("name", "password", "label"), GOOD, ids=[g[0] for g in GOOD])
def test_pop3_login_sees_maildir(world, dovecot, name, password, label):
    assert pop3_subjects(dovecot.pop3_port, login_name(world, name), password) == [f"{SUBJECT} {label}"]


@pytest.mark.parametrize(("name", "password"), BAD, ids=[b[0] + "/" + b[1] for b in BAD])
def test_imap_bad_login_is_auth_failure(world, dovecot, name, password):
    with (
        imaplib.IMAP4("127.0.0.1", dovecot.imap_port, timeout=20) as imap,
        pytest.raises(imaplib.IMAP4.error) as failure,
    ):
        imap.login(login_name(world, name), password)
    assert "[AUTHENTICATIONFAILED]" in str(failure.value), str(failure.value)


@pytest.mark.parametrize(("name", "password"), BAD, ids=[b[0] + "/" + b[1] for b in BAD])
def test_pop3_bad_login_is_auth_failure(world, dovecot, name, password):
    pop = poplib.POP3("127.0.0.1", dovecot.pop3_port, timeout=20)
    try:
        pop.user(login_name(world, name))
        with pytest.raises(poplib.error_proto) as failure:
            pop.pass_(password)
    finally:
        pop.close()
    assert b"-ERR [AUTH]" in failure.value.args[0], failure.value.args[0]


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_default_dovecot_user_is_the_base_user(world, dovecot):
    """checkvpw sets USER to the base user, so Dovecot's session user is the base user."""
    imap_subjects(dovecot.imap_port, "alice@mydomain.org", "alice-pass-2")
    assert _wait_for(lambda: f"imap({world.name})" in dovecot.log_text()), dovecot.log_text()[-2000:]


def test_keep_login_name_variant(world, dovecot):
    """The documented ``user=%L{orig_user}`` override keeps the (lowercased) login name as
    Dovecot's user; ``auth_default_realm`` (also documented) completes bare names."""
    server = Dovecot(world, keep_login_name=True, realm="mydomain.org")
    try:
        assert imap_subjects(server.imap_port, "me@mydomain.org", "secret") == [f"{SUBJECT} me"]
        # auth_default_realm gives bare names a domain, so they no longer depend on the host name
        assert pop3_subjects(server.pop3_port, "alice", "alice-pass-2") == [f"{SUBJECT} alice"]
        assert pop3_subjects(server.pop3_port, "Henry.Ford@mydomain.org", "henry-pw") == [f"{SUBJECT} henry"]
        assert _wait_for(lambda: "imap(me@mydomain.org)" in server.log_text()), server.log_text()[-2000:]
        assert _wait_for(lambda: "pop3(henry.ford@mydomain.org)" in server.log_text()), server.log_text()[-2000:]
        assert f"imap({world.name})" not in server.log_text()
    finally:
        server.stop()


def test_ip_based_virtual_domain_from_the_local_address(world):
    """The documented ``env TCPLOCALHOST=%{lip}`` args: the address picks the domain [compat: login-names]."""
    control = world.control_dir / "virtualdomains"
    saved = control.read_text()
    control.write_text(saved + f"127.0.0.2:{world.name}\n")
    server = Dovecot(world, keep_login_name=False, ip_domains=True)
    try:
        assert imap_subjects_at("127.0.0.2", server.imap_port, "me", "secret") == [f"{SUBJECT} me"]
        with (
            imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=20) as imap,
            pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"),
        ):
            imap.login("me", "secret")  # 127.0.0.1 names no domain
        assert imap_subjects(server.imap_port, "me@mydomain.org", "secret") == [f"{SUBJECT} me"]
        assert imap_subjects(server.imap_port, f"{world.name}-me", "secret") == [f"{SUBJECT} me"]
    finally:
        server.stop()
        control.write_text(saved)
