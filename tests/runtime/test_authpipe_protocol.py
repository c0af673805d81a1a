"""authpipe without authdaemond: request parsing, reply framing, caching, refusals, exit codes.

Most tests drive `serve` in-process over real file descriptors against a rooted fixture host
(``build_step_root``: base user ``vbase1``, uid 1008, home inside the root). No system account
is needed for lookups; PASSWD's child really drops to uid 1008, so those tests need root.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FIXTURE_PASSWORDS, IS_ROOT, build_step_root, unrooted_sandbox
from test_authpipe_support import DOMAIN, STEP, chown_tree, world_dir

from vmreconcile.formats.cdb import CdbReader, build_cdb
from vmreconcile.formats.vpwentry import decode_record
from vmreconcile.host import Host
from vmreconcile.runtime.courier import authpipe, passwd, protocol
from vmreconcile.runtime.courier.directory import Directory
from vmreconcile.runtime.courier.protocol import (
    Auth,
    Enumerate,
    Malformed,
    Passwd,
    Pre,
    ProtocolError,
    RequestReader,
    account_reply,
    enumerate_line,
    parse_auth_payload,
    parse_line,
)

requires_root = pytest.mark.skipif(not IS_ROOT, reason="PASSWD drops to the base uid: needs root; CI runs as root")


def auth(user: str, password: str, authtype: str = "login", service: str = "imap") -> bytes:
    body = f"{service}\n{authtype}\n{user}\n{password}\n".encode()
    return b"AUTH %d\n" % len(body) + body


@pytest.fixture
def host() -> Iterator[Host]:
    """A rooted fixture host in a world-traversable dir (PASSWD's child runs as uid 1008)."""
    with world_dir("vmr-authpipe-") as top:
        root = top / "root"
        home = build_step_root(STEP, root)
        if IS_ROOT:
            chown_tree(home, 1008, 1008)
        yield Host(root)


def serve(host: Host, data: bytes) -> tuple[int, bytes]:
    """Run the request loop over a file holding ``data``; (exit status, everything written)."""
    with tempfile.TemporaryFile() as src, tempfile.TemporaryFile() as dst:
        src.write(data)
        src.seek(0)
        code = authpipe.serve(Directory(host, environ={}), src.fileno(), dst.fileno())
        dst.seek(0)
        return code, dst.read()


# --------------------------------------------------------------------------- parsing


def test_parse_requests() -> None:
    assert parse_line(b"PRE . imap me@example.com") == Pre("imap", "me@example.com")
    assert parse_line(b"PRE . imap user with spaces") == Pre("imap", "user with spaces")
    assert parse_line(b"PASSWD imap\tme@x\told pw\tnew:pw") == Passwd("imap", "me@x", "old pw", "new:pw")
    assert parse_line(b"ENUMERATE") == Enumerate()
    assert parse_line(b"AUTH 19") == 19
    assert isinstance(parse_line(b"PRE . imap"), Malformed)
    assert isinstance(parse_line(b"PASSWD imap\tme\told"), Malformed)
    assert isinstance(parse_line(b"HELLO"), Malformed)
    assert isinstance(parse_line(b""), Malformed)
    assert isinstance(parse_line(b"AUTH"), Malformed)
    for bad in (b"AUTH -1", b"AUTH x", b"AUTH 99999", b"AUTH 1234567890"):
        with pytest.raises(ProtocolError):
            parse_line(bad)


def test_parse_auth_payload() -> None:
    assert parse_auth_payload(b"imap\nlogin\nme@x\nsecret\n") == Auth("imap", "login", "me@x", "secret")
    assert parse_auth_payload(b"imap\nlogin\nme@x\nsecret") == Auth("imap", "login", "me@x", "secret")
    assert parse_auth_payload(b"pop3\nlogin\nme@x\n") == Auth("pop3", "login", "me@x", "")
    assert parse_auth_payload(b"imap\ncram-md5\nabc\ndef\n") == Auth("imap", "cram-md5", "", "")
    assert parse_auth_payload(b"imap\nlogin\n\xff\n\xfe\n").user == "\udcff"  # bytes survive


def test_reader_handles_requests_split_anywhere() -> None:
    stream = b"PRE . imap a@b\n" + auth("me@x", "p w") + b"ENUMERATE\n"
    read_end, write_end = os.pipe()
    try:
        reader = RequestReader(read_end)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - writer child
            os.close(read_end)
            for byte in stream:
                os.write(write_end, bytes([byte]))
            os._exit(0)
        os.close(write_end)
        requests = [reader.next_request() for _ in range(4)]
        os.waitpid(pid, 0)
    finally:
        os.close(read_end)
    assert requests == [Pre("imap", "a@b"), Auth("imap", "login", "me@x", "p w"), Enumerate(), None]


def test_reply_framing() -> None:
    assert account_reply([("UID", "5"), ("HOME", "/h")]) == b"UID=5\nHOME=/h\n.\n"
    with pytest.raises(ValueError):
        account_reply([("MAILDIR", "a\nb")])
    assert enumerate_line("me@x", 5, 6, "/h", "./users/me") == "me@x\t5\t6\t/h\t./users/me\t\n"
    assert enumerate_line("me@x", 5, 6, "/h", "./users/a\tb") is None


# --------------------------------------------------------------------------- serving


def test_auth_pre_and_failures(host: Host) -> None:
    home = host.path("/home/vbase1")
    code, out = serve(
        host,
        b"".join(
            [
                auth(f"me@{DOMAIN}", "secret"),
                auth(f"me@{DOMAIN}", "wrong"),
                auth(f"bob@{DOMAIN}", FIXTURE_PASSWORDS["bob"]),
                auth(f"info@{DOMAIN}", "*"),
                auth(f"me@{DOMAIN}", "secret", authtype="cram-md5"),
                b"PRE . imap dave@" + DOMAIN.encode() + b"\n",
                b"PRE . imap alice@" + DOMAIN.encode() + b"\n",
                b"NONSENSE\n",
            ]
        ),
    )
    assert code == 0
    me = f"UID=1008\nGID=1008\nHOME={home}\nADDRESS=me@{DOMAIN}\nMAILDIR=./users/me\n.\n".encode()
    bob = f"UID=1008\nGID=1008\nHOME={home}\nADDRESS=bob@{DOMAIN}\nNAME=Bob Builder\nMAILDIR=./users/bob\n.\n".encode()
    alice = f"UID=1008\nGID=1008\nHOME={home}\nADDRESS=alice@{DOMAIN}\nNAME=Alice Example\nMAILDIR=./users/alice\n.\n"
    assert out == me + b"FAIL\n" + bob + b"FAIL\n" + b"FAIL\n" + b"FAIL\n" + alice.encode() + b"FAIL\n"


def test_nul_in_a_name_is_refused_not_a_crash(tmp_path: Path) -> None:
    """Unrooted (``pwd`` lookups, in a sandbox): getpwnam() raises on NUL; we answer FAIL."""
    with unrooted_sandbox(tmp_path) as host:
        code, out = serve(host, auth("x\0y", "p") + b"PRE . imap a\0b@example.org\n")
    assert (code, out) == (0, b"FAIL\nFAIL\n")


def test_login_without_domain_uses_tcplocalhost(host: Host) -> None:
    directory = Directory(host, environ={"TCPLOCALHOST": DOMAIN})
    assert directory.authenticate("me", "secret").user.directory == "./users/me"
    directory = Directory(host, environ={"TCPLOCALHOST": "localhost"})  # locals: base-virtual form
    assert directory.authenticate("vbase1-me", "secret").virtual_name == "me"


def test_every_reply_is_one_write(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []
    real_write = os.write

    def counting_write(fd: int, data) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(protocol.os, "write", counting_write)
    code, out = serve(host, auth(f"me@{DOMAIN}", "secret") + auth(f"me@{DOMAIN}", "x") + b"ENUMERATE\n")
    assert code == 0
    assert len(writes) == 3 and b"".join(writes) == out
    assert writes[1] == b"FAIL\n" and writes[2].endswith(b"\n.\n")


@pytest.mark.skipif(not shutil.which("strace"), reason="strace is not installed")
def test_every_reply_is_one_write_syscall(tmp_path: Path) -> None:
    """The same, seen by the kernel: run the installed launcher under strace."""
    from vmreconcile.install import install_runtime

    root = tmp_path / "root"
    build_step_root(STEP, root)
    install_runtime(tmp_path / "bin", root=str(root), libdir=tmp_path / "lib", programs=("authpipe",))
    requests = auth(f"me@{DOMAIN}", "secret") + b"PRE . imap ghost@mydomain.org\n" + b"ENUMERATE\n"
    trace = tmp_path / "trace"
    result = subprocess.run(
        [
            "strace",
            "-f",
            "-e",
            "trace=write",
            "-e",
            "signal=none",
            "-o",
            str(trace),
            str(tmp_path / "bin" / "authpipe"),
        ],
        input=requests,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    writes = [line for line in trace.read_text().splitlines() if "write(1," in line]
    assert len(writes) == 3, writes
    assert result.stdout.count(b"\n.\n") == 2 and b"FAIL\n" in result.stdout


def test_table_reopened_only_when_changed(host: Host) -> None:
    directory = Directory(host, environ={})
    first = directory.authenticate(f"me@{DOMAIN}", "secret")
    table = Path(directory.table_file(first.base))
    reader = directory.table(first.base)
    assert directory.table(first.base) is reader  # unchanged: the same mapping
    raw = CdbReader(table.read_bytes())
    items = [(k, v.replace(b"./users/me\0", b"./users/mx\0") if k == b"me" else v) for k, v in raw.items()]
    replacement = table.with_name("passwd.cdb.new")
    replacement.write_bytes(build_cdb(items))
    os.rename(replacement, table)  # how every writer replaces it: a new inode
    assert directory.table(first.base) is not reader
    assert directory.authenticate(f"me@{DOMAIN}", "secret").user.directory == "./users/mx"


def test_symlinked_table_is_a_temporary_failure(host: Host) -> None:
    home = host.path("/home/vbase1")
    (home / "passwd.cdb").rename(home / "real.cdb")
    (home / "passwd.cdb").symlink_to(home / "real.cdb")
    code, out = serve(host, auth(f"me@{DOMAIN}", "secret") + b"ENUMERATE\n")
    assert code == authpipe.EXIT_TEMPORARY and out == b""  # no reply: authdaemond reports a temporary error


def test_protocol_errors_exit_without_reply(host: Host) -> None:
    assert serve(host, b"AUTH 100\nimap\nlogin\n") == (authpipe.EXIT_PROTOCOL, b"")
    assert serve(host, b"AUTH 99999999\n") == (authpipe.EXIT_PROTOCOL, b"")
    assert serve(host, b"ENUMERATE") == (authpipe.EXIT_PROTOCOL, b"")  # EOF inside a line
    assert serve(host, b"X" * 9000) == (authpipe.EXIT_PROTOCOL, b"")
    code, out = serve(host, b"PRE . imap me@mydomain.org\n" + b"Y" * 9000 + b"\n")
    assert code == authpipe.EXIT_PROTOCOL and out.endswith(b".\n")  # the first request was answered
    assert serve(host, b"") == (authpipe.EXIT_EOF, b"")


def test_enumerate_skips_wildcards_locals_and_other_domains(host: Host) -> None:
    control = host.path("/var/qmail/control")
    (control / "virtualdomains").write_text(
        f"{DOMAIN}:vbase1\n.{DOMAIN}:vbase1\nalias.example:vbase1\nlocalhost:vbase1\nnobase.example:nosuchuser\n"
    )
    code, out = serve(host, b"ENUMERATE\n")
    names = [line.split("\t")[0] for line in out.decode().splitlines()[:-1]]
    assert code == 0 and out.endswith(b"\n.\n")
    assert f"me@{DOMAIN}" in names and "me@alias.example" not in names  # each user once
    assert not any(n.endswith("@localhost") or n.endswith("nobase.example") for n in names)


def test_enumerate_and_login_with_prefixed_domain(host: Host) -> None:
    """``sub.example:vbase1-pre`` maps ``bob@sub.example`` to virtual user ``pre-bob`` [compat: login-names]."""
    (host.path("/var/qmail/control") / "virtualdomains").write_text("sub.example:vbase1-Pre\n")
    table = host.path("/home/vbase1/passwd.cdb")
    items = list(CdbReader(table.read_bytes()).items())
    table.write_bytes(build_cdb(items + [(b"pre-bob", dict(items)[b"me"])]))
    directory = Directory(host, environ={})
    assert [address for address, *_ in directory.enumerate()] == ["bob@sub.example"]
    assert directory.authenticate("bob@sub.example", "secret").virtual_name == "Pre-bob"


@requires_root
def test_passwd_changes_only_listed_users(host: Host) -> None:
    (host.config_dir / "vmreconcile-passwd-changeable").write_text("vbase1/erin\n")
    table = host.path("/home/vbase1/passwd.cdb")
    before = table.read_bytes()
    code, out = serve(
        host,
        b"".join(
            [
                f"PASSWD imap\tme@{DOMAIN}\tsecret\tnew-me\n".encode(),  # managed: refused
                f"PASSWD imap\terin@{DOMAIN}\twrong\tnew-erin\n".encode(),  # wrong old password
                f"PASSWD imap\terin@{DOMAIN}\terin-pw\t\n".encode(),  # empty new password
                f"PASSWD imap\terin@{DOMAIN}\terin-pw\tline\rbreak\n".encode(),
                f"PASSWD imap\terin@{DOMAIN}\terin-pw\terin-new\n".encode(),
                auth(f"erin@{DOMAIN}", "erin-new"),
                auth(f"erin@{DOMAIN}", "erin-pw"),
            ]
        ),
    )
    assert code == 0
    assert out.split(b"\n")[:6] == [b"FAIL", b"FAIL", b"FAIL", b"FAIL", b"OK", b"UID=1008"]
    assert out.endswith(b".\nFAIL\n")
    erin = decode_record(b"erin", CdbReader(table.read_bytes()).get(b"erin"))
    assert erin.password.startswith("$6$")  # the scheme of the old hash
    old, new = CdbReader(before), CdbReader(table.read_bytes())
    assert [k for k, _ in old.items()] == [k for k, _ in new.items()]
    assert all(new.get(k) == v for k, v in old.items() if k != b"erin")
    assert os.stat(table).st_uid == 1008  # written by the child, as the base user


@requires_root
def test_passwd_upgrades_plaintext_to_yescrypt(host: Host) -> None:
    (host.config_dir / "vmreconcile-passwd-changeable").write_text("vbase1/dave\n")
    table = host.path("/home/vbase1/passwd.cdb")
    raw = CdbReader(table.read_bytes())
    items = [(k, v.replace(b"1000000000\0", b"-\0") if k == b"dave" else v) for k, v in raw.items()]
    table.write_bytes(build_cdb(items))  # un-expire dave ($0$dave-plain)
    code, out = serve(
        host, f"PASSWD imap\tdave@{DOMAIN}\tdave-plain\tdave-2\n".encode() + auth(f"dave@{DOMAIN}", "dave-2")
    )
    assert code == 0 and out.startswith(b"OK\nUID=1008\n")
    assert decode_record(b"dave", CdbReader(table.read_bytes()).get(b"dave")).password.startswith("$y$")


@requires_root
def test_passwd_replaces_a_planted_symlink_lock(host: Host, tmp_path: Path) -> None:
    (host.config_dir / "vmreconcile-passwd-changeable").write_text("vbase1/me\n")
    home = host.path("/home/vbase1")
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    (home / "passwd.cdb.tmp").symlink_to(victim)
    code, out = serve(host, f"PASSWD imap\tme@{DOMAIN}\tsecret\tx\n".encode() + auth(f"me@{DOMAIN}", "x"))
    assert (code, out[:3]) == (0, b"OK\n") and out.endswith(b".\n")
    assert victim.read_bytes() == b"untouched"
    assert not (home / "passwd.cdb.tmp").exists()


@requires_root
def test_passwd_clears_a_stale_leftover(host: Host) -> None:
    """An unlocked ``passwd.cdb.tmp`` untouched for longer than STALE_AFTER: a crash's leftover [compat: table-files]."""
    (host.config_dir / "vmreconcile-passwd-changeable").write_text("vbase1/me\n")
    leftover = host.path("/home/vbase1/passwd.cdb.tmp")
    leftover.write_bytes(b"half a table")
    os.utime(leftover, (time.time() - 60, time.time() - 60))
    code, out = serve(host, f"PASSWD imap\tme@{DOMAIN}\tsecret\tx\n".encode())
    assert (code, out) == (0, b"OK\n")
    assert not leftover.exists()


@requires_root
def test_passwd_waits_for_a_live_writer(host: Host) -> None:
    """Another writer holds ``passwd.cdb.tmp`` (flock): wait, then write once it is gone."""
    (host.config_dir / "vmreconcile-passwd-changeable").write_text("vbase1/me\n")
    lock = host.path("/home/vbase1/passwd.cdb.tmp")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)

    def finish() -> None:  # the other writer ends: its temp file goes away, then the lock
        time.sleep(0.4)
        lock.unlink()
        os.close(fd)

    other = threading.Thread(target=finish)
    other.start()
    started = time.monotonic()
    code, out = serve(host, f"PASSWD imap\tme@{DOMAIN}\tsecret\tx\n".encode())
    other.join()
    assert (code, out) == (0, b"OK\n")
    assert time.monotonic() - started >= 0.3


@requires_root
def test_passwd_gives_up_on_a_busy_table(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """A young unlocked temp file (a running vadduser) that stays: FAIL after the wait, untouched."""
    monkeypatch.setattr(passwd, "TEMP_TIMEOUT", 0.3)  # inherited by the forked child
    (host.config_dir / "vmreconcile-passwd-changeable").write_text("vbase1/me\n")
    busy = host.path("/home/vbase1/passwd.cdb.tmp")
    busy.write_bytes(b"")
    table = host.path("/home/vbase1/passwd.cdb")
    before = table.read_bytes()
    code, out = serve(host, f"PASSWD imap\tme@{DOMAIN}\tsecret\tx\n".encode())
    assert (code, out) == (0, b"FAIL\n")
    assert busy.exists() and table.read_bytes() == before


def test_sigint_ends_the_program_without_a_traceback(tmp_path: Path) -> None:
    from vmreconcile.install import install_runtime

    root = tmp_path / "root"
    build_step_root(STEP, root)
    install_runtime(tmp_path / "bin", root=str(root), libdir=tmp_path / "lib", programs=("authpipe",))
    proc = subprocess.Popen(
        [str(tmp_path / "bin" / "authpipe")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        proc.stdin.write(b"PRE . imap me@mydomain.org\n")
        proc.stdin.flush()
        assert proc.stdout.readline().startswith(b"UID=")  # up and serving
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == -signal.SIGINT
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_control_files_rechecked_within_a_second(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmreconcile.runtime.courier import directory as directory_module

    directory = Directory(host, environ={})
    assert directory.authenticate(f"me@{DOMAIN}", "secret").virtual_name == "me"
    with pytest.raises(directory_module.Refused):
        directory.authenticate("me@new.example", "secret")
    control = host.path("/var/qmail/control/virtualdomains")
    replacement = control.with_name("virtualdomains.new")
    replacement.write_text(control.read_text() + "new.example:vbase1\n")
    os.rename(replacement, control)
    clock = time.monotonic()
    monkeypatch.setattr(directory_module.time, "monotonic", lambda: clock + 1.5)
    assert directory.authenticate("me@new.example", "secret").virtual_name == "me"


def test_system_accounts_only_with_the_switch(host: Host) -> None:
    from vmreconcile.formats.hashing import hash_password

    (host.path("/etc/shadow")).write_text(f"vbase1:{hash_password('base-pass-1', 'sha512-crypt')}:19000:0:99999:7:::\n")
    requests = auth("vbase1@unknown.example", "base-pass-1") + b"PRE . imap vbase1@unknown.example\n"
    assert serve(host, requests) == (0, b"FAIL\nFAIL\n")  # off by default (the login core's switch)
    (host.config_dir / "vmreconcile-system-logins").write_text("yes\n")
    home = host.path("/home/vbase1")
    account = f"UID=1008\nGID=1008\nHOME={home}\nADDRESS=vbase1@unknown.example\n.\n".encode()  # no MAILDIR
    assert serve(host, requests) == (0, account + account)
    assert serve(host, auth("vbase1@unknown.example", "wrong")) == (0, b"FAIL\n")
    assert serve(host, auth("root@unknown.example", "x")) == (0, b"FAIL\n")  # uid 0 is never an account


def test_tables_stay_mapped_in_the_long_lived_process(host: Host) -> None:
    """A one-shot login reads a small table into memory; authpipe keeps up to MAX_TABLES tables
    open, so it maps them (pages shared with the page cache) whatever their size."""
    import mmap

    directory = Directory(host, environ={})
    base = directory.base_user("vbase1")
    assert base is not None
    table = directory.table(base)
    assert table is not None and isinstance(table.reader._data, mmap.mmap)


def test_enumerate_is_streamed_in_bounded_chunks(host: Host, monkeypatch) -> None:
    """20,000 mailboxes (about 1 MB of reply): written as produced in chunks of whole lines
    of about ENUMERATE_CHUNK bytes, never built whole; together they are the full list."""
    table = host.path("/home/vbase1/passwd.cdb")
    items = list(CdbReader(table.read_bytes()).items())
    me = dict(items)[b"me"]
    table.write_bytes(build_cdb(items + [(b"user%05d" % i, me) for i in range(20_000)]))
    writes: list[bytes] = []
    real_write = authpipe.write_reply
    monkeypatch.setattr(authpipe, "write_reply", lambda fd, data: (writes.append(data), real_write(fd, data)))
    code, out = serve(host, b"ENUMERATE\n")
    assert code == 0 and out == b"".join(writes) and out.endswith(b"\n.\n")
    names = {line.split("\t")[0] for line in out.decode().splitlines()[:-1]}
    assert {f"user{i:05d}@{DOMAIN}" for i in range(20_000)} <= names
    assert len(writes) > 10
    assert all(chunk.endswith(b"\n") for chunk in writes)
    longest_line = max(len(line) for line in out.splitlines(keepends=True))
    assert max(len(chunk) for chunk in writes) < authpipe.ENUMERATE_CHUNK + longest_line + len(authpipe.END)


def test_enumerate_failing_half_way_ends_without_the_end_line(host: Host, monkeypatch) -> None:
    """The client must see a failure (EOF before ``.``, then a new program), never a short list."""

    from types import SimpleNamespace

    def failing(self):
        yield f"me@{DOMAIN}", self.base_user("vbase1"), SimpleNamespace(directory="m"), "/h"
        raise RuntimeError("bug")

    monkeypatch.setattr(authpipe, "ENUMERATE_CHUNK", 1)  # the first line is written before the failure
    monkeypatch.setattr(Directory, "enumerate", failing)
    code, out = serve(host, b"ENUMERATE\n")
    assert code == authpipe.EXIT_TEMPORARY
    assert out == f"me@{DOMAIN}\t1008\t1008\t/h\tm\t\n".encode() and not out.endswith(b".\n")
