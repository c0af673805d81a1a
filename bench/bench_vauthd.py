"""vauthd against checkvpw through a real Dovecot, lookups per second, and memory over 100,000 lookups.

Run as root: ``.venv/bin/python bench/bench_vauthd.py [--logins N] [--rounds R] [--lookups N]``.

1. **passdb latency through Dovecot.** A throwaway world (real base user, step-11 fixture
   table, launchers baked to a temp root, as the tests build it) and two private Dovecot 2.3
   instances: one configured from examples/dovecot/vmreconcile-vauthd.conf (vauthd started as
   examples/systemd/ starts it), one from examples/dovecot/vmreconcile-checkvpw.conf. A client
   speaks Dovecot's auth-client protocol and sends sequential ``AUTH PLAIN`` for
   ``me@mydomain.org`` (a ``$1$`` hash), the passdb path of every IMAP/POP3 login; rounds
   alternate between the two so machine noise hits both alike. Target: vauthd >= 10x lower.
2. **Lookups per second** straight on vauthd's socket, 2 client processes (2 cores), each a
   connection doing sequential passdb lookups as an auth-worker with idle_msecs does. Target
   >= 1,000/s.
3. **Memory.** A vauthd serving a 100,000-user domain answers 100,000 lookups of distinct
   users (passdb and userdb, a tenth unknown) and two full user listings; its RSS is sampled
   every 10,000 lookups. Target: flat (no growth after the table is first read).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "runtime"))

from loginkit import create_world, destroy_world
from test_dovecot import Dovecot
from vauthdkit import HELLO, AuthClient, Vauthd, VauthdDovecot, ask, lookup_line

from vmreconcile.formats.cdb import build_cdb
from vmreconcile.formats.hashing import hash_password
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.install import install_runtime
from vmreconcile.model import VirtualUser

USER, PASSWORD = "me@mydomain.org", "secret"


def time_logins(client: AuthClient, count: int) -> list[float]:
    """Milliseconds per ``AUTH PLAIN`` (each must succeed)."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        result, fields = client.auth_plain(USER, PASSWORD)
        times.append((time.perf_counter() - started) * 1000)
        assert result == "OK", (result, fields)
    return times


def latency(world, logins: int, rounds: int) -> tuple[float, float]:
    vauthd = Vauthd(world.launcher("vauthd"), world.root / "vauthd.sock", world.root / "vauthd.log")
    by_dict = VauthdDovecot(world, vauthd.socket_path, "bench")
    by_checkvpw = Dovecot(world, keep_login_name=False)
    try:
        clients = {
            "vauthd (dict passdb)": AuthClient(by_dict.auth_client_socket),
            "checkvpw (checkpassword passdb)": AuthClient(by_checkvpw.tmp / "run" / "auth-client"),
        }
        times: dict[str, list[float]] = {name: [] for name in clients}
        for client in clients.values():
            time_logins(client, 20)  # warm up: worker processes started, caches filled
        for _ in range(rounds):
            for name, client in clients.items():
                times[name] += time_logins(client, logins)
        print(f"1. passdb through Dovecot: sequential AUTH PLAIN {USER} ($1$), {rounds} x {logins} each, interleaved")
        print(f"   {'passdb':34} {'median ms':>10} {'mean ms':>9} {'p90 ms':>8} {'logins/s':>9}")
        for name, values in times.items():
            p90 = statistics.quantiles(values, n=10)[-1]
            median = statistics.median(values)
            print(f"   {name:34} {median:10.3f} {statistics.mean(values):9.3f} {p90:8.3f} {1000 / median:9.0f}")
        fast = statistics.median(times["vauthd (dict passdb)"])
        slow = statistics.median(times["checkvpw (checkpassword passdb)"])
        print(f"   checkvpw / vauthd per login: {slow / fast:.1f}x  (target >= 10x)")
        for client in clients.values():
            client.close()
        return fast, slow
    finally:
        by_dict.stop()
        by_checkvpw.stop()
        vauthd.stop()


def _hammer(path: str, keys: list[bytes], seconds: float, out) -> None:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(HELLO)
    done = 0
    buffer = b""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sock.sendall(keys[done % len(keys)])
        while b"\n" not in buffer:
            buffer += sock.recv(65536)
        reply, _, buffer = buffer.partition(b"\n")
        assert reply[:1] in (b"O", b"N"), reply
        done += 1
    sock.close()
    out.put(done)


def throughput(path: Path, keys: list[bytes], clients: int = 2, seconds: float = 3.0) -> float:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_hammer, args=(str(path), keys, seconds, queue)) for _ in range(clients)]
    for worker in workers:
        worker.start()
    total = sum(queue.get() for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


def big_domain(top: Path, users: int) -> Path:
    """A rooted host with one domain of ``users`` users (one shared $1$ hash: building is quick)."""
    root = top / "root"
    (root / "etc" / "vmailmgr").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nvbig:x:2000:2000::/home/vbig:/bin/sh\n")
    (root / "etc" / "vmailmgr" / "qmail-root").write_text("/var/qmail\n")
    control = root / "var" / "qmail" / "control"
    control.mkdir(parents=True)
    (control / "locals").write_text("localhost\n")
    (control / "virtualdomains").write_text("big.example:vbig\n")
    home = root / "home" / "vbig"
    home.mkdir(parents=True)
    stored = hash_password(PASSWORD, "md5-crypt")
    items = []
    for n in range(users):
        name = f"user{n:06d}"
        record = VirtualUser(name=name, password=stored, directory=f"./users/{name}", hard_quota=10**9, created=1)
        items.append((user_key(name), encode_record(record)))
    (home / "passwd.cdb").write_bytes(build_cdb(items))
    return root


def memory(top: Path, users: int, lookups: int) -> list[tuple[int, int]]:
    root = big_domain(top, users)
    install_runtime(top / "bin", root=str(root), libdir=top / "lib", programs=("vauthd",))
    table_size = (root / "home" / "vbig" / "passwd.cdb").stat().st_size
    server = Vauthd(str(top / "bin" / "vauthd"), top / "big.sock", top / "big.log", activation=False)
    samples = []
    try:
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(top / "big.sock"))
        sock.sendall(HELLO)
        buffer = b""
        samples.append((0, server.rss_kib()))
        started = time.perf_counter()
        for n in range(1, lookups + 1):
            kind = "passdb" if n % 2 else "userdb"
            name = f"user{(n * 7919) % users:06d}" if n % 10 else f"nobody{n}"
            sock.sendall(lookup_line(f"shared/{kind}/{name}@big.example"))
            while b"\n" not in buffer:
                buffer += sock.recv(65536)
            reply, _, buffer = buffer.partition(b"\n")
            assert reply[:1] == (b"N" if name.startswith("nobody") else b"O"), reply[:80]
            if n == lookups // 2 or n == lookups:
                listing = ask(top / "big.sock", HELLO + b"I0\t0\tshared/userdb/\t*\n", timeout=120)
                assert listing.count(b"\n") == users + 1
            if n % 10_000 == 0:
                samples.append((n, server.rss_kib()))
        elapsed = time.perf_counter() - started
        sock.close()
    finally:
        server.stop()
    print(f"3. memory: {lookups} lookups of distinct users in a {users}-user domain (table {table_size / 1e6:.1f} MB)")
    print(
        f"   and 2 full listings, in {elapsed:.1f} s ({lookups / elapsed:.0f}/s on one connection, listings included)"
    )
    print("   RSS of vauthd (KiB) after N lookups: " + ", ".join(f"{n // 1000}k={rss}" for n, rss in samples))
    first, last = samples[1][1], samples[-1][1]
    print(f"   growth from 10k to {lookups // 1000}k lookups: {last - first} KiB (target: flat)")
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=200, help="AUTH PLAIN per setup and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the Dovecot instances, checkvpw and the throwaway base user need it")
    world = create_world(programs=("vauthd", "checkvpw"))
    try:
        latency(world, args.logins, args.rounds)
        vauthd = Vauthd(world.launcher("vauthd"), world.root / "rate.sock", world.root / "rate.log")
        try:
            names = ["me", "alice", "bob", "carol", "erin", "henry.ford", "frank", "nosuchuser"]
            keys = [lookup_line(f"shared/passdb/{name}@mydomain.org") for name in names]
            rate = throughput(vauthd.socket_path, keys)
            print(f"2. lookups straight on the socket, 2 client processes: {rate:.0f}/s  (target >= 1,000/s)")
        finally:
            vauthd.stop()
    finally:
        destroy_world(world)
    with tempfile.TemporaryDirectory(prefix="vmr-bench-vauthd-") as tmp:
        memory(Path(tmp), args.users, args.lookups)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
