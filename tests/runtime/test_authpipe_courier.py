"""Our authpipe under the real courier-authlib authdaemond (Debian's), checked with authtest/authenumerate.

The daemon's paths are compiled into Debian's authdaemond, so each test module runs a private instance in
its own mount namespace: ``unshare --mount --propagation private`` bind-mounts a temp dir over
``/etc/courier`` (authdaemonrc with ``authmodulelist="authpipe"``, ``daemons=2``,
``authProg`` -> our launcher) and another over ``/run/courier/authdaemon`` (the socket), then
runs ``authdaemond`` in the foreground. ``authtest``/``authenumerate`` run in the same namespace
through ``nsenter``. The host's /etc/courier and any system authdaemond are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from test_authpipe_support import (
    AUTHDAEMOND,
    DOMAIN,
    FIXTURE_PASSWORDS,
    LIBAUTHPIPE,
    Courier,
    Domain,
    authdaemond,
    domain,
    system_user,
)

from vmreconcile.formats.cdb import CdbReader
from vmreconcile.formats.vpwentry import decode_record

pytestmark = [
    pytest.mark.root,
    pytest.mark.peers,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespace, setuid); CI runs as root"),
    pytest.mark.skipif(
        not (os.path.exists(AUTHDAEMOND) and os.path.exists(LIBAUTHPIPE) and shutil.which("authtest")),
        reason="needs Debian's courier-authdaemon and courier-authlib-pipe packages",
    ),
    pytest.mark.skipif(
        not shutil.which("unshare") or not shutil.which("nsenter"), reason="needs util-linux unshare/nsenter"
    ),
]


@pytest.fixture(scope="module")
def courier() -> Iterator[Courier]:
    with domain("vmrcour") as dom, authdaemond(dom) as running:
        yield running


@pytest.fixture
def restore_table(courier: Courier) -> Iterator[Courier]:
    """Tests that change passwords put the fixture table back (a new inode, as writers do)."""
    dom = courier.domain
    saved = dom.table.read_bytes()
    yield courier
    spare = dom.table.with_name("passwd.cdb.restore")
    spare.write_bytes(saved)
    os.chown(spare, dom.uid, dom.gid)
    spare.chmod(0o600)
    spare.rename(dom.table)
    (dom.root / "etc" / "vmailmgr" / "vmreconcile-passwd-changeable").unlink(missing_ok=True)


def _table_user(dom: Domain, name: str):
    return decode_record(name.encode(), CdbReader(dom.table.read_bytes()).get(name.encode()))


@pytest.mark.parametrize(
    "login, user",
    [
        (f"me@{DOMAIN}", "me"),
        (f"me:{DOMAIN}", "me"),
        (f"Henry.Ford@{DOMAIN}", "henry.ford"),  # maildir with ':' in it
        (f"bob@{DOMAIN}", "bob"),  # password with a space and a colon
        (f"carol@{DOMAIN}", "carol"),  # $1$ set with --password
        (f"erin@{DOMAIN}", "erin"),  # $6$ through crypt(3)
        (f"frank@{DOMAIN}", "frank"),  # mailbox disabled does not block logins [compat: fields]
    ],
)
def test_good_password_logs_in(courier: Courier, login: str, user: str) -> None:
    dom = courier.domain
    result = courier.authtest(login, FIXTURE_PASSWORDS[user])
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Authentication succeeded." in out
    assert f"Authenticated: {login}  (uid {dom.uid}, gid {dom.gid})" in out
    assert f"Home Directory: {dom.home}" in out
    assert f"Maildir: {_table_user(dom, user).directory}" in out
    assert "Cleartext Password: (none)" in out
    assert "Encrypted Password: (none)" in out


def test_base_user_form_logs_in(courier: Courier) -> None:
    dom = courier.domain
    result = courier.authtest(f"{dom.base}-me@localhost", "secret")  # locals wins: base-virtual form
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Maildir: ./users/me" in result.stdout


@pytest.mark.parametrize(
    "login, password",
    [
        (f"me@{DOMAIN}", "wrong"),  # wrong password
        (f"me@{DOMAIN}", "SECRET"),  # passwords are case-sensitive
        (f"nosuchuser@{DOMAIN}", "secret"),  # unknown virtual user
        ("me@unknown.example", "secret"),  # unknown domain
        (f"info@{DOMAIN}", "*"),  # alias-only entry (no mailbox, password '*')
        (f"sales@{DOMAIN}", "x"),  # alias with forwards
        (f"dave@{DOMAIN}", "dave-plain"),  # right password, but expired
        (f"nopass@{DOMAIN}", "*"),  # stored '*' never matches
        (f"@{DOMAIN}", "secret"),  # empty user part
        ("me@", "secret"),  # empty domain
    ],
)
def test_bad_logins_fail_permanently(courier: Courier, login: str, password: str) -> None:
    result = courier.authtest(login, password)
    assert result.returncode != 0
    assert "Authentication FAILED: Operation not permitted" in result.stdout + result.stderr


def test_system_account_is_left_to_other_modules(courier: Courier) -> None:
    result = courier.authtest(f"{courier.domain.base}@unknown.example", "whatever")
    assert result.returncode != 0
    assert "Operation not permitted" in result.stdout + result.stderr


def test_pre_lookup_without_password(courier: Courier) -> None:
    result = courier.authtest(f"alice@{DOMAIN}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Maildir: ./users/alice" in result.stdout
    for blocked in (f"info@{DOMAIN}", f"dave@{DOMAIN}", f"ghost@{DOMAIN}"):
        failed = courier.authtest(blocked)
        assert failed.returncode != 0, blocked
        assert "Operation not permitted" in failed.stdout + failed.stderr


def test_authenumerate_lists_users_that_can_log_in(courier: Courier) -> None:
    dom = courier.domain
    result = courier.run("authenumerate")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines() if line.strip()]
    by_name = {row[0]: row for row in rows}
    assert by_name[f"me@{DOMAIN}"][1:5] == [str(dom.uid), str(dom.gid), str(dom.home), "./users/me"]
    assert by_name[f"henry.ford@{DOMAIN}"][4] == "./users/Henry:Ford"
    for name in ("alice", "bob", "carol", "erin", "frank"):
        assert f"{name}@{DOMAIN}" in by_name
    for hidden in ("info", "sales", "support.team", "+", "dave"):  # aliases and the expired user
        assert f"{hidden}@{DOMAIN}" not in by_name
    assert len(rows) == len(by_name)


def test_password_change_for_unmanaged_user(restore_table: Courier) -> None:
    courier = restore_table
    dom = courier.domain
    dom.set_changeable("alice")
    before = CdbReader(dom.table.read_bytes())
    order_before = [key for key, _ in before.items()]
    old_hash = _table_user(dom, "alice").password

    changed = courier.authtest(f"alice@{DOMAIN}", "alice-pass-2", "alice-new-3")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "Password change succeeded." in changed.stdout + changed.stderr

    after = CdbReader(dom.table.read_bytes())
    assert [key for key, _ in after.items()] == order_before  # record order kept
    for key, data in before.items():  # every other record byte for byte
        if key != b"alice":
            assert after.get(key) == data
    new_hash = _table_user(dom, "alice").password
    assert new_hash.startswith("$1$") and new_hash != old_hash  # same scheme as before
    info = dom.table.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (dom.uid, dom.gid, 0o600)
    assert not (dom.home / "passwd.cdb.tmp").exists()

    assert courier.authtest(f"alice@{DOMAIN}", "alice-new-3").returncode == 0  # a later login sees it
    assert courier.authtest(f"alice@{DOMAIN}", "alice-pass-2").returncode != 0
    wrong_old = courier.authtest(f"alice@{DOMAIN}", "not-the-password", "x-4")
    assert wrong_old.returncode != 0
    assert courier.authtest(f"alice@{DOMAIN}", "alice-new-3").returncode == 0


def test_password_change_refused_for_managed_user(restore_table: Courier) -> None:
    courier = restore_table
    dom = courier.domain
    dom.set_changeable("alice")
    before = dom.table.read_bytes()
    result = courier.authtest(f"me@{DOMAIN}", "secret", "hijacked")
    assert result.returncode != 0
    assert "Authentication FAILED: Operation not permitted" in result.stdout + result.stderr  # authtest's wording
    assert dom.table.read_bytes() == before
    assert courier.authtest(f"me@{DOMAIN}", "secret").returncode == 0
    assert "password is managed by vmreconcile" in courier.log.read_text()


def test_stale_leftover_lock_is_cleared(restore_table: Courier) -> None:
    """A ``passwd.cdb.tmp`` left by a crash (unlocked, old) no longer blocks changes for good [compat: table-files]."""
    courier = restore_table
    dom = courier.domain
    dom.set_changeable("carol")
    leftover = dom.home / "passwd.cdb.tmp"
    leftover.write_bytes(b"half a table")
    os.utime(leftover, (time.time() - 60, time.time() - 60))
    result = courier.authtest(f"carol@{DOMAIN}", "carol-pw", "carol-new")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not leftover.exists()
    assert "removed stale passwd.cdb.tmp" in courier.log.read_text()
    assert courier.authtest(f"carol@{DOMAIN}", "carol-new").returncode == 0


def test_refusals_are_logged_with_their_reason(courier: Courier) -> None:
    """DEBUG_LOGIN=1 (exported by the startup script) makes authpipe log why, never the password."""
    courier.authtest(f"dave@{DOMAIN}", "dave-plain")
    log = courier.log.read_text()
    assert "AUTH imap login 'dave@mydomain.org': refused: Account has expired" in log
    assert "dave-plain" not in log


def test_system_accounts_fall_through_to_authpam() -> None:
    """``authmodulelist="authpipe authpam"`` (examples/courier/authdaemonrc): FAIL lets authpam answer."""
    with domain("vmrpam") as dom, system_user("vmrpam") as other:
        subprocess.run(["chpasswd"], input=f"{other.pw_name}:pam-pass-1\n", text=True, check=True)
        with authdaemond(dom, "authpipe authpam") as running:
            assert running.authtest(f"me@{DOMAIN}", "secret").returncode == 0  # authpipe
            system = running.authtest(other.pw_name, "pam-pass-1")  # authpipe FAIL -> authpam
            assert system.returncode == 0, system.stdout + system.stderr
            assert f"(system username: {other.pw_name})" in system.stdout


def test_unusable_table_is_a_temporary_failure(courier: Courier) -> None:
    """A symlinked passwd.cdb: authpipe exits without a reply, Courier reports a temporary error."""
    dom = courier.domain
    real = dom.home / "passwd.real"
    dom.table.rename(real)
    dom.table.symlink_to(real)
    try:
        result = courier.authtest(f"me@{DOMAIN}", "secret")
        assert result.returncode != 0
        assert "Input/output error" in result.stdout + result.stderr  # not "Operation not permitted"
    finally:
        dom.table.unlink()
        real.rename(dom.table)
    assert "is a symbolic link; refusing to follow it" in courier.log.read_text()
    assert courier.authtest(f"me@{DOMAIN}", "secret").returncode == 0  # a fresh program answers again


def test_programs_stay_running_between_requests(courier: Courier) -> None:
    """One long-lived authpipe per worker: many requests, no new program started."""
    started = courier.log.read_text().count("executing /etc/courier/authProg")
    for _ in range(6):
        assert courier.authtest(f"erin@{DOMAIN}", "erin-pw").returncode == 0
        assert courier.authtest(f"erin@{DOMAIN}", "nope").returncode != 0
    assert courier.run("authenumerate").returncode == 0
    assert courier.log.read_text().count("executing /etc/courier/authProg") - started <= 2  # at most one per worker
