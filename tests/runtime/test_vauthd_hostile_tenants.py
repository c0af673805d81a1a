"""vauthd against a hostile tenant: one base user's table must never slow down or break the
logins of another. A real vauthd process (the installed launcher) over a rooted world with two
domains: ``mydomain.org`` (the fixture step's table, the tenant that misbehaves) and
``other.org`` (a second base user, the bystander)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import build_step_root, never_empty_cdb
from test_authpipe_support import STEP, world_dir
from vauthdkit import HELLO, ask, lookup_line

from vmreconcile.formats import cdb
from vmreconcile.formats.cdb import build_cdb, build_cdb_pure
from vmreconcile.formats.hashing import hash_password
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.install import install_runtime
from vmreconcile.model import VirtualUser

BYSTANDER = lookup_line("shared/passdb/bob@other.org")
TENANT = lookup_line("shared/passdb/me@mydomain.org")


def table_of(users: dict[str, str]) -> bytes:
    """A cdb holding one mailbox per ``name: hash``."""
    return build_cdb(
        (user_key(name), encode_record(VirtualUser(name=name, password=hashed, directory=f"./users/{name}")))
        for name, hashed in users.items()
    )


def replace_table(path: Path, data: bytes) -> None:
    """Install ``data`` as the table at ``path`` the way apply and VMailMgr do: write, rename."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.rename(temporary, path)


class World:
    def __init__(self, top: Path) -> None:
        self.root = top / "root"
        build_step_root(STEP, self.root)
        etc = self.root / "etc"
        with open(etc / "passwd", "a") as fp:
            fp.write("vbase2:x:1009:1009::/home/vbase2:/bin/sh\n")
        control = self.root / "var" / "qmail" / "control"
        with open(control / "virtualdomains", "a") as fp:
            fp.write("other.org:vbase2\n")
        self.other_home = self.root / "home" / "vbase2"
        (self.other_home / "users" / "bob").mkdir(parents=True)
        self.other_table = self.other_home / "passwd.cdb"
        self.bob_hash = hash_password("bobs secret", "md5-crypt")
        replace_table(self.other_table, table_of({"bob": self.bob_hash}))
        self.tenant_table = self.root / "home" / "vbase1" / "passwd.cdb"
        bindir = top / "bin"
        install_runtime(bindir, root=str(self.root), libdir=top / "lib", programs=("vauthd",))
        self.launcher = bindir / "vauthd"
        self.socket = top / "vauthd.sock"


@pytest.fixture
def world() -> Iterator[World]:
    with world_dir("vmr-vauthd-hostile-") as top:
        yield World(top)


@pytest.fixture
def vauthd(world: World) -> Iterator[subprocess.Popen]:
    yield from running_vauthd(world, subprocess.PIPE)


@pytest.fixture
def vauthd_logging_to_file(world: World) -> Iterator[tuple[subprocess.Popen, Path]]:
    """vauthd with its log in a file, as under a service manager: thousands of logged failures
    a second never fill a pipe nobody reads (which would stall vauthd, not what is measured)."""
    log = world.root.parent / "vauthd.log"
    with open(log, "wb") as fp:
        for process in running_vauthd(world, fp):
            yield process, log


def running_vauthd(world: World, stderr) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(
        [str(world.launcher), "--socket", str(world.socket)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env={"PATH": "/usr/bin:/bin"},
    )
    deadline = time.monotonic() + 15
    while not world.socket.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no socket"
        time.sleep(0.02)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)


def test_a_crafted_table_fails_its_own_logins_fast_and_nobody_elses(world, vauthd):
    """8,000,000 never-empty slots (64 MB, vauthd's cap): cdb's own lookup would walk them for
    ~2 s per lookup, in the one process serving every login. vauthd answers F at once."""
    table, name = never_empty_cdb(8_000_000 - 300)
    replace_table(world.tenant_table, table)
    crafted = lookup_line(f"shared/passdb/{name}@mydomain.org")
    ask(world.socket, HELLO + crafted)  # the first lookup reads (copies) the 64 MB table
    started = time.monotonic()
    replies = ask(world.socket, HELLO + crafted * 20 + BYSTANDER)
    elapsed = time.monotonic() - started
    lines = replies.split(b"\n")
    assert lines[:20] == [b"FCannot read the virtual password table"] * 20, replies[:200]
    assert lines[20].startswith(b'O{"password":"{CRYPT}$1$'), lines[20]
    assert elapsed < 5, f"20 lookups took {elapsed:.1f} s"  # ~20 ms; walking the slots: ~40 s
    vauthd.send_signal(signal.SIGTERM)
    _, err = vauthd.communicate(timeout=15)
    assert f"probed {cdb.MAX_PROBES} slots of hash table 7" in err.decode(), err


def test_a_hash_too_costly_to_check_is_not_served_to_dovecot(world, vauthd):
    """Dovecot would compute ``rounds=999999999`` on every attempt: vauthd answers N (as for a
    bad entry) and logs why; the tenant's other users and other tenants are served."""
    costly = "$6$rounds=999999999$abcdefgh$" + "a" * 86
    replace_table(world.other_table, table_of({"bob": world.bob_hash, "carol": costly}))
    replies = ask(world.socket, HELLO + lookup_line("shared/passdb/carol@other.org") + BYSTANDER).split(b"\n")
    assert replies[0] == b"N"
    assert replies[1].startswith(b'O{"password":"{CRYPT}$1$')
    userdb = ask(world.socket, HELLO + lookup_line("shared/userdb/carol@other.org"))
    assert userdb.startswith(b'O{"uid":1009'), userdb  # the mailbox still gets mail
    vauthd.send_signal(signal.SIGTERM)
    _, err = vauthd.communicate(timeout=15)
    log = err.decode()
    assert "passdb 'carol@other.org': not found: Password hash too costly to check: sha-crypt rounds=999999999" in log
    assert costly not in log


#: The attacker: change the table's identity (its times) as fast as it can, and ask for its own
#: logins on one connection, so that every lookup would find the table changed.
TOUCH_AND_ASK = """
import os, socket, sys, time
table, path, line, seconds = sys.argv[1], sys.argv[2], sys.argv[3].encode() + b"\\n", float(sys.argv[4])
touch = "touch" in sys.argv[5:]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(path)
sock.sendall(b"H3\\t0\\t0\\t\\tvauthd\\n")
end, n = time.monotonic() + seconds, 0
while time.monotonic() < end:
    if touch:
        n += 1
        os.utime(table, ns=(n, n))
    sock.sendall(line)
    while not sock.recv(65536).endswith(b"\\n"):
        pass
"""


def lookups_per_second(path: Path, line: bytes, seconds: float) -> float:
    """Sequential lookups of ``line`` on one connection for ``seconds``: the bystander's rate."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(HELLO)
        count, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            sock.sendall(line)
            reply = b""
            while not reply.endswith(b"\n"):
                reply += sock.recv(65536)
            assert reply.startswith(b'O{"password"'), reply
            count += 1
        return count / (time.monotonic() - started)


def big_table(megabytes: int) -> bytes:
    """A valid table of ``megabytes`` MB: ``me`` plus records of the largest size (what re-reading costs)."""
    me = VirtualUser(name="me", password=hash_password("secret", "md5-crypt"), directory="./users/me")
    items = [(user_key("me"), encode_record(me))]
    items += [(b"pad%d" % i, b"x" * (cdb.MAX_RECORD_SIZE - 8)) for i in range(megabytes * 16)]
    return build_cdb(items)


def test_a_tenant_touching_its_table_in_a_loop_does_not_starve_other_domains(world, vauthd):
    """Without the re-read throttle every one of the tenant's lookups re-reads its 48 MB table
    (~30 ms each) and the bystander gets about one lookup per re-read (measured: 3,755/s calm,
    8/s attacked); with it, re-reading takes at most ~1/11 of vauthd's time (3,844/s calm,
    2,601/s attacked). Measured against the same load without the touching."""
    import sys

    replace_table(world.tenant_table, big_table(48))
    assert ask(world.socket, HELLO + TENANT).startswith(b"O")

    def attacker(touch: bool) -> subprocess.Popen:
        args = [str(world.tenant_table), str(world.socket), TENANT.decode().rstrip("\n"), "4"]
        return subprocess.Popen([sys.executable, "-c", TOUCH_AND_ASK, *args, *(["touch"] if touch else [])])

    rates = {}
    for touch in (False, True):
        process = attacker(touch)
        try:
            time.sleep(0.5)  # the attacker is at full speed
            rates[touch] = lookups_per_second(world.socket, BYSTANDER, 2.0)
        finally:
            process.wait(30)
        assert process.returncode == 0
    assert rates[True] >= rates[False] / 4, f"bystander lookups/s: {rates[False]:.0f} calm, {rates[True]:.0f} attacked"


def test_a_changed_password_is_seen_within_the_reread_interval(world, vauthd):
    from vmreconcile.runtime.dovecot.tablecache import MAX_STALE_SECONDS

    assert ask(world.socket, HELLO + BYSTANDER).startswith(b'O{"password":"{CRYPT}' + world.bob_hash.encode())
    new = hash_password("bobs new secret", "md5-crypt")
    replace_table(world.other_table, table_of({"bob": new}))
    changed = time.monotonic()
    while not ask(world.socket, HELLO + BYSTANDER).startswith(b'O{"password":"{CRYPT}' + new.encode()):
        assert time.monotonic() - changed < MAX_STALE_SECONDS + 1.0, "the new password was not seen in time"
        time.sleep(0.01)


def test_a_table_replaced_by_a_hard_link_to_another_table_is_refused(world, vauthd):
    world.tenant_table.unlink()
    os.link(world.other_table, world.tenant_table)  # the bystander's table, under the tenant's name
    assert ask(world.socket, HELLO + TENANT) == b"FCannot read the virtual password table\n"
    assert ask(world.socket, HELLO + BYSTANDER).startswith(b"F")  # its own table has 2 links now too


def alias_table(aliases: int) -> bytes:
    """``me`` (a mailbox) and ``aliases`` alias records (forwards, no mailbox): a listing walks
    every record and finds one row."""
    me = VirtualUser(name="me", password=hash_password("secret", "md5-crypt"), directory="./users/me")
    items = [(user_key("me"), encode_record(me))]
    template = encode_record(VirtualUser(name="alias0", password="*", directory="", forwards=("x@example.com",)))
    items += [(user_key(f"alias{i}"), template) for i in range(aliases)]  # the record's bytes do not name it
    return build_cdb(items)


def test_a_listing_of_a_huge_alias_table_does_not_hold_up_other_logins(world, vauthd):
    """The tenant's 300,000 aliases take vauthd about a second to walk and give one row. Walked
    in one go (before the pauses) every lookup arriving meanwhile waited for the whole walk;
    now the walk hands the loop back every few hundred records, so the bystander's lookups
    keep a latency of milliseconds while the listing is in progress, and the listing is whole."""
    import socket
    import threading

    replace_table(world.tenant_table, alias_table(300_000))
    assert ask(world.socket, HELLO + TENANT).startswith(b"O")  # the table is read (copied) before timing
    listing: dict[str, object] = {}

    def list_users() -> None:
        started = time.monotonic()
        listing["reply"] = ask(world.socket, HELLO + b"I0\t0\tshared/userdb/\t*\n", timeout=60)
        listing["seconds"] = time.monotonic() - started

    latencies = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(world.socket))
        sock.sendall(HELLO)
        lister = threading.Thread(target=list_users)
        lister.start()
        while lister.is_alive():
            started = time.monotonic()
            sock.sendall(BYSTANDER)
            reply = b""
            while not reply.endswith(b"\n"):
                reply += sock.recv(65536)
            latencies.append(time.monotonic() - started)
            assert reply.startswith(b'O{"password"'), reply
        lister.join()
    rows = sorted(listing["reply"].split(b"\n"))  # type: ignore[union-attr]
    assert rows == [b"", b"", b"Oshared/userdb/bob@other.org\t", b"Oshared/userdb/me@mydomain.org\t"], rows[:5]
    assert listing["seconds"] > 0.2, "the walk is too short to show anything on this machine"  # type: ignore[operator]
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    assert len(latencies) >= 20 and p99 < 0.1, (
        f"{len(latencies)} lookups during a {listing['seconds']:.2f} s listing: "
        f"p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
    )


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_one_huge_record_fails_its_own_logins_fast_and_costs_nobody_else(world, vauthd_logging_to_file):
    """``me`` with 4,000,000 forwards (48 MB, under vauthd's 64 MB cap): decoding it took ~1 s
    of CPU and ~650 MiB per lookup, in the one process serving every login. Its lengths alone
    now refuse it (F for that tenant's logins), the bystander keeps its rate, and vauthd's
    memory does not grow with the tenant's lookups."""
    import sys

    vauthd, log = vauthd_logging_to_file
    me = VirtualUser(name="me", password=hash_password("secret", "md5-crypt"), directory="./users/me")
    huge = me.with_changes(forwards=("f@example.net",) * 4_000_000)  # 14 bytes each: 56 MB
    record = encode_record(huge)
    assert 48 << 20 < len(record) < 60 << 20
    replace_table(world.tenant_table, build_cdb_pure([(user_key("me"), record)]))  # apply would refuse it
    assert ask(world.socket, HELLO + TENANT) == b"FCannot read the virtual password table\n"  # copies the table
    peak = peak_rss_kib(vauthd.pid)
    started = time.monotonic()
    replies = ask(world.socket, HELLO + TENANT * 50 + BYSTANDER).split(b"\n")
    elapsed = time.monotonic() - started
    assert replies[:50] == [b"FCannot read the virtual password table"] * 50
    assert replies[50].startswith(b'O{"password":"{CRYPT}$1$'), replies[50]
    assert elapsed < 5, f"50 lookups took {elapsed:.1f} s"  # ~10 ms; decoding: ~50 s
    calm = lookups_per_second(world.socket, BYSTANDER, 1.0)
    args = [str(world.tenant_table), str(world.socket), TENANT.decode().rstrip("\n"), "3"]
    attacker = subprocess.Popen([sys.executable, "-c", TOUCH_AND_ASK, *args])
    try:
        time.sleep(0.3)
        attacked = lookups_per_second(world.socket, BYSTANDER, 1.5)
    finally:
        attacker.wait(30)
    assert attacked >= calm / 4, f"bystander lookups/s: {calm:.0f} calm, {attacked:.0f} with the tenant asking"
    assert peak_rss_kib(vauthd.pid) - peak < 32 << 10  # KiB: no decoding of the 56 MB record, ever
    assert "more than the 65536 one record may have" in log.read_text()
