"""Benchmark vdeliver as qmail-local runs it: one process per message, through a real launcher.

Prints:
* deliveries per second of a 10 kB message into a 10,000-user domain (random recipients,
  each with its own maildir), without and with limits (maildirsize accounting), and with a
  forward through a qmail-queue stand-in that discards what it reads;
* the time of one delivery process against ``/usr/bin/python3 -I -S -c pass`` (the ratio the
  issue targets at <= 2x), and the launcher's floor (python plus the foundation modules every
  runtime program imports) so vdeliver's own share is visible;
* a 50 MB message: time and the child's peak RSS, next to the 10 kB figure (flat memory).

Usage: ``.venv/bin/python bench/bench_vdeliver.py [--deliveries N]``. Runs as the invoking user
in a scratch directory under /tmp that it removes afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmreconcile.formats.cdb import build_cdb
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.install import default_libdir, install_runtime
from vmreconcile.model import VirtualUser

USERS = 10_000
PYTHON = "/usr/bin/python3"
DISCARDING_QUEUE = "#!/bin/sh\ncat > /dev/null\ncat <&1 > /dev/null\nexit 0\n"


def build_domain(home: Path) -> list[str]:
    """10,000 mailbox users (u00000..u09999); every 10th has limits, every 100th a forward."""
    users = []
    for n in range(USERS):
        name = f"u{n:05d}"
        limits = {"hard_quota": 10**9, "soft_quota": 9 * 10**8, "message_count_limit": 10**6} if n % 10 == 1 else {}
        forwards = ("someone@elsewhere.example",) if n % 100 == 2 else ()
        users.append(VirtualUser(name, directory=f"./users/{name}", forwards=forwards, **limits))
        for sub in ("tmp", "new", "cur"):
            (home / "users" / name / sub).mkdir(parents=True)
    (home / "passwd.cdb").write_bytes(build_cdb([(user_key(u.name), encode_record(u)) for u in users]))
    return [u.name for u in users]


def env_for(home: Path, ext: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "USER": "vbase1",
        "HOME": str(home),
        "EXT": ext,
        "HOST": "bench.example",
        "SENDER": "sender@example.net",
        "UFLINE": "From sender@example.net Tue Nov 24 18:54:20 2026\n",
        "RPLINE": "Return-Path: <sender@example.net>\n",
        "DTLINE": f"Delivered-To: vbase1-{ext}@bench.example\n",
    }


def run_once(cmd: list[str], env: dict[str, str] | None, stdin_path: Path | None) -> tuple[float, int]:
    """(seconds, exit status) of one child process."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115
    started = time.perf_counter()
    code = subprocess.call(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    elapsed = time.perf_counter() - started
    if stdin_path:
        stdin.close()
    return elapsed, code


def peak_rss(cmd: list[str], env: dict[str, str], stdin_path: Path, scratch: Path) -> tuple[float, int]:
    """(seconds, peak RSS in kB) measured by GNU time, whose own small footprint is the floor.

    ``wait4`` in this process would not do: Linux keeps the RSS high-water mark across
    ``exec``, so a child forked from this (large) Python process would report our size.
    """
    out = scratch / "time.out"
    with open(stdin_path, "rb") as stdin:
        code = subprocess.call(
            ["/usr/bin/time", "-f", "%e %M", "-o", str(out), *cmd],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    assert code == 0, (cmd, code)
    seconds, kilobytes = out.read_text().split()[-2:]
    return float(seconds), int(kilobytes)


def disk_cost(base: Path, runs: int) -> float:
    """The median time of the durable part of one maildir delivery, without any process start."""
    box = base / "disk-probe"
    for sub in ("tmp", "new"):
        (box / sub).mkdir(parents=True)
    data = b"x" * 10240
    times = []
    for n in range(runs):
        started = time.perf_counter()
        fd = os.open(box / "tmp" / str(n), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.link(box / "tmp" / str(n), box / "new" / str(n))
        os.unlink(box / "tmp" / str(n))
        dfd = os.open(box / "new", os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
        times.append(time.perf_counter() - started)
    shutil.rmtree(box)
    return sorted(times)[len(times) // 2]


def rate(label: str, times: list[float]) -> float:
    """Print runs per second, the median and the 10th percentile (less noisy on a busy host)."""
    ordered = sorted(times)
    per, low = ordered[len(ordered) // 2], ordered[len(ordered) // 10]
    print(f"{label:<58} {len(times) / sum(times):8.1f}/s   median {per * 1000:7.2f} ms   p10 {low * 1000:7.2f} ms")
    return per


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=300)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-vdeliver-", dir="/tmp"))
    try:
        root = base / "root"
        (root / "etc/vmailmgr").mkdir(parents=True)
        (root / "etc/vmailmgr/qmail-root").write_text("/var/qmail\n")
        (root / "var/qmail/control").mkdir(parents=True)
        (root / "var/qmail/control/me").write_text("bench.example\n")
        (root / "var/qmail/bin").mkdir()
        (root / "var/qmail/bin/qmail-queue").write_text(DISCARDING_QUEUE)
        (root / "var/qmail/bin/qmail-queue").chmod(0o755)
        (vdeliver,) = install_runtime(base / "bin", root=str(root), programs=("vdeliver",))
        libdir = default_libdir(vdeliver.parent.resolve())
        floor_cmd = [
            PYTHON,
            "-I",
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, {str(libdir)!r}); "
            f"from vmreconcile.runtime.launch import run; from vmreconcile.host import Host; Host({str(root)!r})",
        ]
        home = base / "home"
        started = time.perf_counter()
        names = build_domain(home)
        print(
            f"domain: {USERS} users, table {(home / 'passwd.cdb').stat().st_size} bytes, "
            f"built in {time.perf_counter() - started:.1f} s"
        )
        small = base / "10k.eml"
        head = b"From: a@b.example\nTo: c@d.example\nSubject: bench\n\n"
        small.write_bytes(head + b"x" * (10 * 1024 - len(head) - 1) + b"\n")
        rng = random.Random(7)
        plain = [n for i, n in enumerate(names) if i % 10 != 1 and i % 100 != 2]
        limited = [n for i, n in enumerate(names) if i % 10 == 1]
        forwarding = [n for i, n in enumerate(names) if i % 100 == 2]

        n = args.deliveries
        # Interleaved (one of each per round) so a busy host slows every figure alike.
        pools = {
            "plain mailbox": plain,
            "mailbox with limits (maildirsize)": limited,
            "mailbox + forward (qmail-queue stand-in)": forwarding,
        }
        bare: list[float] = []
        floor: list[float] = []
        timings: dict[str, list[float]] = {label: [] for label in pools}
        for _ in range(n):
            bare.append(run_once([PYTHON, "-I", "-S", "-c", "pass"], None, None)[0])
            floor.append(run_once(floor_cmd, None, None)[0])
            for label, pool in pools.items():
                ext = rng.choice(pool)
                elapsed, code = run_once([str(vdeliver)], env_for(home, ext), small)
                assert code == 0, (label, ext, code)
                timings[label].append(elapsed)
        results = {
            label: (timings[label], peak_rss([str(vdeliver)], env_for(home, rng.choice(pool)), small, base)[1])
            for label, pool in pools.items()
        }

        print(
            f"\n{n} runs each, one process per run (interleaved, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}):"
        )
        print(
            f"{'disk: write 10 kB + fsync + link + fsync of new/ (in-process)':<58} "
            f"{'':>10}   median {disk_cost(base, n) * 1000:7.2f} ms"
        )
        bare_median = rate("/usr/bin/python3 -I -S -c pass", bare)
        floor_median = rate("launcher floor (python + the launcher's foundation imports)", floor)
        for label, (times, rss) in results.items():
            median = rate(f"vdeliver 10 kB, {label}", times)
            print(
                f"{'':<58} {median / bare_median:8.2f}x bare python, "
                f"{median / floor_median:.2f}x launcher floor, peak RSS {rss} kB"
            )

        big = base / "50m.eml"
        with open(big, "wb") as fp:
            fp.write(head)
            line = b"0123456789abcdef" * 4 + b"\n"
            for _ in range(50 * 1024 * 1024 // len(line)):
                fp.write(line)
        print(f"\n50 MB message ({big.stat().st_size} bytes):")
        for label, ext in (("mailbox", plain[0]), ("mailbox + forward", forwarding[0])):
            elapsed, peak = peak_rss([str(vdeliver)], env_for(home, ext), big, base)
            print(f"  {label:<20} {elapsed * 1000:8.0f} ms   peak RSS {peak} kB")
        _, small_rss = peak_rss([str(vdeliver)], env_for(home, plain[1]), small, base)
        _, bare_rss = peak_rss([PYTHON, "-I", "-S", "-c", "pass"], {}, small, base)
        print(f"  {'10 kB, same run':<20} {'':>8}      peak RSS {small_rss} kB")
        print(f"  {'bare python -I -S':<20} {'':>8}      peak RSS {bare_rss} kB")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
