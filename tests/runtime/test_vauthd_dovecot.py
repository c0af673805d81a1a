"""vauthd under a real, private Dovecot 2.3 configured only from the shipped examples.

vauthd runs from its installed launcher the way examples/systemd/ starts it (socket made as
vauthd.socket says and passed as fd 3; as an unprivileged uid holding only the capability
vauthd.service grants); Dovecot's auth is examples/dovecot/vmreconcile-vauthd.conf and its
.conf.ext with the paths substituted, below the same test header (ports, private dirs, the
loopback nodelay passdb) the checkvpw Dovecot tests use. The login cases are theirs: every
good one must see its maildir over IMAP and POP3, every bad one must be an authentication
failure, never a temporary one.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import smtplib
import time
from pathlib import Path

import pytest
from loginkit import create_world, destroy_world
from test_dovecot import (
    BAD,
    GOOD,
    SUBJECT,
    _dovecot_version,
    _wait_for,
    imap_subjects,
    imap_subjects_at,
    login_name,
    pop3_subjects,
    put_message,
)
from vauthdkit import (
    CACHE_LINES,
    HAS_LMTP,
    HELLO,
    NOBODY,
    QUOTA_LINES,
    AuthClient,
    Vauthd,
    VauthdDovecot,
    ask,
    lookup_line,
)

from tests.checkout_cli import CLI
from vmreconcile.formats.cdb import CdbReader, build_cdb
from vmreconcile.formats.hashing import hash_password
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.model import VirtualUser, from_bytes
from vmreconcile.runtime.delivery import maildirsize as maildir_quota
from vmreconcile.runtime.delivery.maildirsize import quota_definition
from vmreconcile.tables import iter_users, open_table

pytestmark = [
    pytest.mark.skipif(
        _dovecot_version()[:4] not in ("", "2.3."),
        reason="the example config is Dovecot 2.3 syntax (Debian 12); 2.4 changed it",
    ),
    pytest.mark.root,
    pytest.mark.peers,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (system user, Dovecot, setpriv); CI runs as root"),
    pytest.mark.skipif(not _dovecot_version(), reason="needs Debian's dovecot-core, dovecot-imapd and dovecot-pop3d"),
]

EXPIRED = ("dave@mydomain.org", "dave-plain")
BAD_NOT_EXPIRED = [case for case in BAD if case != EXPIRED]
assert len(BAD_NOT_EXPIRED) == len(BAD) - 1
needs_lmtp = pytest.mark.skipif(not HAS_LMTP, reason="needs Debian's dovecot-lmtpd (bin/test installs it)")


@pytest.fixture(scope="module")
def world():
    made = create_world(programs=("vauthd",))
    for maildir, label in (("users/me", "me"), ("users/alice", "alice"), ("users/Henry:Ford", "henry")):
        put_message(made, maildir, label)
    yield made
    destroy_world(made)


@pytest.fixture(scope="module")
def vauthd(world):
    server = Vauthd(world.launcher("vauthd"), world.root / "vauthd.sock", world.root / "vauthd.log")
    yield server
    assert server.stop() == 0, server.log_text()


@pytest.fixture(scope="module")
def dovecot(world, vauthd):
    server = VauthdDovecot(world, vauthd.socket_path, "default")
    yield server
    server.stop()


# ---------------------------------------------------------------------------- least privilege


def test_vauthd_runs_unprivileged_with_only_the_capability_to_read(vauthd):
    status = dict(line.split(":", 1) for line in Path(f"/proc/{vauthd.process.pid}/status").read_text().splitlines())
    assert status["Uid"].split() == [str(NOBODY)] * 4 and status["Gid"].split() == [str(NOBODY)] * 4
    dac_read_search = 1 << 2
    for kind in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert int(status[kind], 16) == dac_read_search, (kind, status[kind])
    assert status["NoNewPrivs"].strip() == "1"


def test_without_the_capability_the_tables_cannot_be_read(world):
    """The one capability is needed: without it the 0700 homes stay closed (a temporary failure)."""
    server = Vauthd(world.launcher("vauthd"), world.root / "nocap.sock", world.root / "nocap.log", capabilities=[])
    try:
        reply = ask(server.socket_path, HELLO + lookup_line("shared/passdb/me@mydomain.org"))
        assert reply.startswith(b"F"), reply
        assert "Permission denied" in server.log_text()
    finally:
        assert server.stop() == 0


# ---------------------------------------------------------------------------- logins


@pytest.mark.parametrize(("name", "password", "label"), GOOD, ids=[g[0] for g in GOOD])
def test_imap_login_sees_maildir(world, dovecot, name, password, label):
    assert imap_subjects(dovecot.imap_port, login_name(world, name), password) == [f"{SUBJECT} {label}"]


@pytest.mark.parametrize(("name", "password", "label"), GOOD, ids=[g[0] for g in GOOD])
def test_pop3_login_sees_maildir(world, dovecot, name, password, label):
    assert pop3_subjects(dovecot.pop3_port, login_name(world, name), password) == [f"{SUBJECT} {label}"]


@pytest.mark.parametrize(("name", "password"), BAD, ids=[b[0] + "/" + b[1] for b in BAD])
def test_imap_bad_login_is_a_permanent_refusal(world, dovecot, name, password):
    with (
        imaplib.IMAP4("127.0.0.1", dovecot.imap_port, timeout=20) as imap,
        pytest.raises(imaplib.IMAP4.error) as failure,
    ):
        imap.login(login_name(world, name), password)
    expected = "[CONTACTADMIN] Account has expired" if (name, password) == EXPIRED else "[AUTHENTICATIONFAILED]"
    assert expected in str(failure.value), str(failure.value)


@pytest.mark.parametrize(("name", "password"), BAD, ids=[b[0] + "/" + b[1] for b in BAD])
def test_pop3_bad_login_is_a_permanent_refusal(world, dovecot, name, password):
    pop = poplib.POP3("127.0.0.1", dovecot.pop3_port, timeout=20)
    try:
        pop.user(login_name(world, name))
        with pytest.raises(poplib.error_proto) as failure:
            pop.pass_(password)
    finally:
        pop.close()
    reply = failure.value.args[0]
    assert reply.startswith(b"-ERR [AUTH]") or reply.startswith(b"-ERR [SYS/PERM]"), reply
    assert b"Temporary" not in reply and b"[SYS/TEMP]" not in reply and b"[IN-USE]" not in reply
    if (name, password) == EXPIRED:
        assert b"Account has expired" in reply, reply


def test_expired_user_with_a_wrong_password_learns_nothing(dovecot):
    with (
        imaplib.IMAP4("127.0.0.1", dovecot.imap_port, timeout=20) as imap,
        pytest.raises(imaplib.IMAP4.error) as failure,
    ):
        imap.login("dave@mydomain.org", "wrong")
    assert "[AUTHENTICATIONFAILED]" in str(failure.value) and "expired" not in str(failure.value)


def test_dovecot_user_is_the_login_name(world, dovecot):
    """No shared base-user name as with checkvpw: each virtual user is its own Dovecot user."""
    imap_subjects(dovecot.imap_port, "alice@mydomain.org", "alice-pass-2")
    assert _wait_for(lambda: "imap(alice@mydomain.org)" in dovecot.log_text()), dovecot.log_text()[-2000:]
    assert f"imap({world.name})" not in dovecot.log_text()


def test_auth_client_plain_returns_the_user(dovecot):
    client = AuthClient(dovecot.auth_client_socket)
    try:
        assert client.auth_plain("me@mydomain.org", "secret")[0] == "OK"
        assert client.auth_plain("me@mydomain.org", "wrong")[0] == "FAIL"
        result, fields = client.auth_plain("me:mydomain.org", "secret")
        assert result == "OK" and "user=me:mydomain.org" in fields
    finally:
        client.close()


def test_names_that_are_not_utf8_reach_dovecot_unchanged(world, dovecot):
    """Old VMailMgr tables hold Latin-1 (a personal field, a maildir name): JSON carries the raw
    bytes and Dovecot 2.3 takes them as they are, so such users still log in."""
    import subprocess

    table = world.home / "passwd.cdb"
    saved = table.read_bytes()
    users = [
        VirtualUser(name="jurgen", password="$0$pw", directory="./users/jurgen", personal=from_bytes(b"J\xfcrgen")),
        VirtualUser(name="jorg", password="$0$pw", directory=from_bytes(b"./users/j\xfcrg")),
    ]
    try:
        items = list(CdbReader(saved).items()) + [(user_key(u.name), encode_record(u)) for u in users]
        new = world.home / "passwd.cdb.new"
        new.write_bytes(build_cdb(items))
        os.replace(new, table)
        for directory in (b"users/jurgen", b"users/j\xfcrg"):
            for sub in (b"", b"/new", b"/cur", b"/tmp"):
                path = os.path.join(bytes(world.home), directory + sub)
                os.mkdir(path)
                os.chown(path, world.uid, world.gid)
        shown = subprocess.run(["doveadm", "-c", str(dovecot.conf), "user", "jorg@mydomain.org"], capture_output=True)
        assert b"users/j\xfcrg\n" in shown.stdout, shown
        shown = subprocess.run(["doveadm", "-c", str(dovecot.conf), "user", "jurgen@mydomain.org"], capture_output=True)
        assert b"vuser_personal\tJ\xfcrgen\n" in shown.stdout, shown
        for user in ("jurgen@mydomain.org", "jorg@mydomain.org"):
            assert imap_login(dovecot, user, "pw")
    finally:
        new = world.home / "passwd.cdb.new"
        new.write_bytes(saved)
        os.replace(new, table)


# ---------------------------------------------------------------------------- doveadm


def test_doveadm_user_shows_the_userdb_fields(world, dovecot):
    done = dovecot.doveadm("user", "alice@mydomain.org")
    assert done.returncode == 0, done.stdout + done.stderr
    fields = dict(line.split(None, 1) for line in done.stdout.splitlines()[1:] if line.strip())
    assert fields["uid"] == str(world.uid) and fields["gid"] == str(world.gid)
    assert fields["home"] == str(world.home / "users" / "alice")
    assert fields["mail"] == "maildir:~"
    assert fields["quota_rule"] == "*:storage=1000000B"
    assert fields["vuser_personal"] == "Alice Example"
    henry = dovecot.doveadm("user", "henry.ford@mydomain.org")
    assert f"home      {world.home}/users/Henry:Ford" in henry.stdout.replace("\t", "      "), henry.stdout


@pytest.mark.parametrize("name", ["nosuchuser@mydomain.org", "info@mydomain.org", "dave@mydomain.org"])
def test_doveadm_user_unknown_alias_or_expired_does_not_exist(dovecot, name):
    done = dovecot.doveadm("user", name)
    assert done.returncode == 67, done.stdout + done.stderr


def test_doveadm_auth_test(dovecot):
    assert dovecot.doveadm("auth", "test", "carol@mydomain.org", "carol-pw").returncode == 0
    assert dovecot.doveadm("auth", "test", "erin@mydomain.org", "erin-pw").returncode == 0  # $6$ through CRYPT
    assert dovecot.doveadm("auth", "test", "carol@mydomain.org", "carol-pwx").returncode == 77
    assert dovecot.doveadm("auth", "test", "nopass@mydomain.org", "*").returncode == 77


def test_user_iteration_lists_every_mailbox(world, dovecot):
    done = dovecot.doveadm("user", "*")
    assert done.returncode == 0, done.stdout + done.stderr
    reader = open_table(world.home / "passwd.cdb")
    now = int(time.time())
    expected = {
        f"{user.name}@mydomain.org"
        for user in iter_users(reader)
        if user.has_mailbox and user.directory and (user.expires is None or user.expires >= now)
    }
    assert sorted(done.stdout.split()) == sorted(expected)
    assert {"me@mydomain.org", "henry.ford@mydomain.org", "frank@mydomain.org"} <= expected
    assert "info@mydomain.org" not in expected and "dave@mydomain.org" not in expected
    masked = dovecot.doveadm("user", "a*")
    assert masked.stdout.split() == ["alice@mydomain.org"]


# ---------------------------------------------------------------------------- delivery


@needs_lmtp
def test_lmtp_delivers_into_the_maildir_as_the_base_user(world, dovecot):
    new = world.home / "users" / "carol" / "new"
    before = set(new.iterdir())
    with smtplib.LMTP("127.0.0.1", dovecot.lmtp_port, timeout=20) as lmtp:
        refused = lmtp.sendmail(
            "a@example.net", ["carol@mydomain.org"], "From: a@example.net\nSubject: via lmtp\n\nhello\n"
        )
    assert refused == {}
    arrived = set(new.iterdir()) - before
    assert len(arrived) == 1
    message = arrived.pop()
    assert "Subject: via lmtp" in message.read_text()
    assert (message.stat().st_uid, message.stat().st_gid) == (world.uid, world.gid)


@needs_lmtp
def test_lmtp_refuses_unknown_and_aliases(dovecot):
    with smtplib.LMTP("127.0.0.1", dovecot.lmtp_port, timeout=20) as lmtp:
        for rcpt in ("nosuchuser@mydomain.org", "info@mydomain.org"):
            lmtp.mail("a@example.net")
            code, _ = lmtp.rcpt(rcpt)
            assert code == 550, (rcpt, code)
            lmtp.rset()


# ---------------------------------------------------------------------------- always current


APPLY_CONFIG = """\
version: 1
qmail:
  root: /var/qmail
domains:
  mydomain.org:
    base_user: {base}
    wildcard: true
    users:
      bob:
        password: "{hash}"
"""


def test_password_changed_by_apply_counts_at_the_next_login(world, vauthd, dovecot, tmp_path):
    import subprocess

    old, new = "b0b p@ss:w0rd", "bob-new-pw"
    assert imap_login(dovecot, "bob@mydomain.org", old)
    config = tmp_path / "mail.yaml"
    config.write_text(APPLY_CONFIG.format(base=world.name, hash=hash_password(new, "sha512-crypt")))
    cli = CLI
    done = subprocess.run(
        [str(cli), "--root", str(world.root), "apply", str(config), "--yes"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    pid = vauthd.process.pid
    assert imap_login(dovecot, "bob@mydomain.org", new)  # the very next login, nothing restarted
    assert not imap_login(dovecot, "bob@mydomain.org", old)
    assert vauthd.process.pid == pid and vauthd.process.poll() is None


def imap_login(dovecot, user: str, password: str) -> bool:
    with imaplib.IMAP4("127.0.0.1", dovecot.imap_port, timeout=20) as imap:
        try:
            imap.login(user, password)
        except imaplib.IMAP4.error as exc:
            assert "AUTHENTICATIONFAILED" in str(exc), str(exc)
            return False
        imap.logout()
        return True


# ---------------------------------------------------------------------------- documented variants


def test_ip_based_virtual_domain_from_the_local_address(world, vauthd):
    """The documented ``passdb/%u/%{lip}`` keys: the address picks the domain of a bare name."""
    control = world.control_dir / "virtualdomains"
    saved = control.read_text()
    control.write_text(saved + f"127.0.0.2:{world.name}\n")
    server = VauthdDovecot(world, vauthd.socket_path, "ip", ip_variant=True)
    try:
        time.sleep(1.1)  # vauthd re-checks control files at most once a second
        assert imap_subjects_at("127.0.0.2", server.imap_port, "me", "secret") == [f"{SUBJECT} me"]
        with (
            imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=20) as imap,
            pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"),
        ):
            imap.login("me", "secret")  # 127.0.0.1 names no domain
        assert imap_subjects(server.imap_port, "me@mydomain.org", "secret") == [f"{SUBJECT} me"]
        assert imap_subjects(server.imap_port, f"{world.name}-me", "secret") == [f"{SUBJECT} me"]
        assert server.doveadm("user", "me@mydomain.org").returncode == 0  # no local address: still found
    finally:
        server.stop()
        control.write_text(saved)


@needs_lmtp
def test_quota_variant_enforces_the_table_limits(world, vauthd):
    server = VauthdDovecot(world, vauthd.socket_path, "quota", enable=QUOTA_LINES)
    try:
        done = server.doveadm("quota", "get", "-u", "alice@mydomain.org")
        assert done.returncode == 0, done.stdout + done.stderr
        storage = [line.split() for line in done.stdout.splitlines() if "STORAGE" in line][0]
        assert storage[-2] == str(-(-1000000 // 1024)), done.stdout  # the limit in KiB, rounded up
        recalc = server.doveadm("quota", "recalc", "-u", "alice@mydomain.org")
        assert recalc.returncode == 0, recalc.stdout + recalc.stderr
        # the maildir++ quota line Dovecot keeps is the one vdeliver writes for the same limits
        first_line = (world.home / "users" / "alice" / "maildirsize").read_text().splitlines()[0]
        assert maildir_quota.same_limits(first_line, quota_definition(1000000, None)), first_line
        bob = server.doveadm("quota", "get", "-u", "bob@mydomain.org")  # bob: 200 messages at most
        assert [line.split()[-2] for line in bob.stdout.splitlines() if "MESSAGE" in line] == ["200"], bob.stdout
        big = "From: a@example.net\nSubject: big\n\n" + ("x" * 99 + "\n") * 10_001
        with smtplib.LMTP("127.0.0.1", server.lmtp_port, timeout=20) as lmtp:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                lmtp.sendmail("a@example.net", ["alice@mydomain.org"], big)  # over alice's 1,000,000 bytes
            assert refused.value.smtp_code == 552, refused.value  # permanent, as vdeliver's bounce
            small = "From: a@example.net\nSubject: fits\n\nhello\n"
            assert lmtp.sendmail("a@example.net", ["alice@mydomain.org"], small) == {}
    finally:
        server.stop()


def test_auth_cache_lines_are_valid_configuration(world, vauthd):
    server = VauthdDovecot(world, vauthd.socket_path, "cache", enable=CACHE_LINES)
    try:
        assert imap_subjects(server.imap_port, "me@mydomain.org", "secret") == [f"{SUBJECT} me"]
        flushed = server.doveadm("auth", "cache", "flush")
        assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    finally:
        server.stop()
