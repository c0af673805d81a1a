"""Benchmark: authpipe requests per second on a 10,000-user domain.

Builds a throwaway rooted host (base user ``vbench``, 10,000 virtual users with ``$1$``
MD5-crypt hashes), installs the runtime launchers with ``/usr/bin/python3 -IS`` and feeds the
real ``authpipe`` program batches of requests over a pipe, as authdaemond would (one program,
requests back to back). Prints:

* the cost of one ``$1$`` hash check alone (``verify_password``, in this interpreter);
* AUTH (good password) per second for ``$1$`` users, and for ``$0$`` ("null crypt") users of
  the same table: the latter is a complete AUTH with no hash work, i.e. the cost beyond the hash
  measured directly (subtracting the hash alone from the ``$1$`` figure overstates it: the hash
  runs slower amid the request loop than in a tight loop);
* AUTH for an unknown user (no hash at all) per second;
* PRE (no password) per second: the lookup path alone;
* one ENUMERATE of the whole domain;
* the program's start-up time (one PRE, end of input).

Target (issue 6): at most 0.1 ms per request beyond the hash. Run: ``.venv/bin/python bench/bench_authpipe.py``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmreconcile.formats.cdb import build_cdb
from vmreconcile.formats.hashing import hash_password
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.install import install_runtime
from vmreconcile.model import VirtualUser

DOMAIN = "bench.example"
PASSWORD = "bench-password"


def build_host(top: Path, users: int) -> tuple[Path, Path]:
    root = top / "root"
    (root / "etc" / "vmailmgr").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nvbench:x:2000:2000::/home/vbench:/bin/sh\n")
    (root / "etc" / "vmailmgr" / "qmail-root").write_text("/var/qmail\n")
    control = root / "var" / "qmail" / "control"
    control.mkdir(parents=True)
    (control / "locals").write_text("localhost\n")
    (control / "virtualdomains").write_text(f"{DOMAIN}:vbench\n")
    home = root / "home" / "vbench"
    home.mkdir(parents=True)
    stored = hash_password(PASSWORD, "md5-crypt")
    items = []
    for n in range(users):
        name = f"user{n:05d}"
        # every 10th user has VMailMgr's "null crypt" $0$: an AUTH for it is a request without hash work
        password = f"$0${PASSWORD}" if n % 10 == 9 else stored
        record = VirtualUser(name=name, password=password, directory=f"./users/{name}", created=1795546316)
        items.append((user_key(name), encode_record(record)))
    (home / "passwd.cdb").write_bytes(build_cdb(items))
    bindir = top / "bin"
    install_runtime(bindir, root=str(root), libdir=top / "lib", programs=("authpipe",))
    return bindir / "authpipe", home


def hash_time(libdir: Path, stored: str, rounds: int = 3000) -> float:
    """Milliseconds per ``verify_password`` of a ``$1$`` hash, in the runtime's own interpreter."""
    code = (
        f"import sys, time; sys.path.insert(0, {str(libdir)!r})\n"
        "from vmreconcile.formats.hashing import verify_password\n"
        f"verify_password({PASSWORD!r}, {stored!r}); t = time.perf_counter()\n"
        f"for _ in range({rounds}): verify_password({PASSWORD!r}, {stored!r})\n"
        f"print((time.perf_counter() - t) / {rounds} * 1000)\n"
    )
    out = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def auth(user: str, password: str) -> bytes:
    body = f"imap\nlogin\n{user}\n{password}\n".encode()
    return b"AUTH %d\n" % len(body) + body


def feed(program: Path, requests: list[bytes]) -> tuple[float, bytes]:
    """Seconds to answer ``requests`` (program start-up excluded by a warm-up PRE), and the output."""
    warm = b"PRE . imap user00000@" + DOMAIN.encode() + b"\n"
    proc = subprocess.Popen([str(program)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin and proc.stdout
    proc.stdin.write(warm)
    proc.stdin.flush()
    first = b""
    while not first.endswith(b".\n"):
        first += proc.stdout.read1(65536)
    started = time.perf_counter()
    out, _ = proc.communicate(b"".join(requests))
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"authpipe exited {proc.returncode}")
    return elapsed, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    top = Path(tempfile.mkdtemp(prefix="vmr-bench-authpipe-"))
    try:
        t0 = time.perf_counter()
        program, home = build_host(top, args.users)
        print(
            f"domain: {args.users} users, table {(home / 'passwd.cdb').stat().st_size} bytes, "
            f"built in {time.perf_counter() - t0:.2f} s; interpreter /usr/bin/python3 -IS"
        )

        stored = hash_password(PASSWORD, "md5-crypt")
        n = args.requests
        spread = [(i * 7919) % args.users for i in range(n)]  # distinct users, no cache hits
        names = [f"user{m - (m % 10 == 9):05d}@{DOMAIN}" for m in spread]  # $1$ users
        nohash = [f"user{m - m % 10 + 9:05d}@{DOMAIN}" for m in spread]  # $0$ users
        good = [auth(name, PASSWORD) for name in names]
        plain = [auth(name, PASSWORD) for name in nohash]
        unknown = [auth(f"nobody{i}@{DOMAIN}", PASSWORD) for i in range(n)]
        pre = [f"PRE . imap {name}\n".encode() for name in names]
        best: dict[str, float] = {}

        def keep(label: str, value: float) -> None:
            best[label] = min(best.get(label, value), value)

        # Interleaved rounds, best of each: the hash time and the request times are taken under
        # the same load, and a burst from another process only costs that round.
        for _ in range(args.rounds):
            keep("hash", hash_time(top / "lib", stored))
            elapsed, out = feed(program, good)
            assert out.count(b"\n.\n") == n, "not every AUTH succeeded"
            keep("good", elapsed / n * 1000)
            elapsed, out = feed(program, plain)
            assert out.count(b"\n.\n") == n, "not every $0$ AUTH succeeded"
            keep("plain", elapsed / n * 1000)
            elapsed, out = feed(program, unknown)
            assert out == b"FAIL\n" * n
            keep("unknown", elapsed / n * 1000)
            elapsed, out = feed(program, pre)
            assert out.count(b"\n.\n") == n
            keep("pre", elapsed / n * 1000)
            elapsed, out = feed(program, [b"ENUMERATE\n"])
            listed = out.count(b"\n") - 1
            keep("enumerate", elapsed * 1000)

        print(f"best of {args.rounds} interleaved rounds, {n} requests each:")
        print(f"$1$ hash check alone:        {best['hash']:.4f} ms  (verify_password, same interpreter)")
        print(
            f"AUTH good password ($1$):    {1000 / best['good']:9.0f} req/s  {best['good']:.4f} ms/req  "
            f"minus the hash alone: {best['good'] - best['hash']:.4f} ms/req"
        )
        print(
            f"AUTH good password ($0$):    {1000 / best['plain']:9.0f} req/s  {best['plain']:.4f} ms/req  "
            "(the whole request without hash work: lookup, decode, checks, reply)"
        )
        print(f"AUTH unknown user (no hash): {1000 / best['unknown']:9.0f} req/s  {best['unknown']:.4f} ms/req")
        print(f"PRE (lookup only):           {1000 / best['pre']:9.0f} req/s  {best['pre']:.4f} ms/req")
        print(f"ENUMERATE ({listed} users):    {best['enumerate']:9.1f} ms")

        t0 = time.perf_counter()
        runs = 10
        for _ in range(runs):
            subprocess.run(
                [str(program)],
                input=b"PRE . imap user00001@" + DOMAIN.encode() + b"\n",
                capture_output=True,
                check=True,
            )
        print(f"start-up + one PRE + exit:   {(time.perf_counter() - t0) / runs * 1000:9.1f} ms")
        t0 = time.perf_counter()
        for _ in range(runs):
            subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", "pass"], check=True)
        print(f"(/usr/bin/python3 -IS -c pass: {(time.perf_counter() - t0) / runs * 1000:7.1f} ms)")
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
