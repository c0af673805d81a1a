"""Foundation figures: 100,000-user table write, one lookup, full decode, launcher start-up.

Run: .venv/bin/python bench/bench_formats.py
Targets (issue 3): write <= 0.5 s, lookup <= 20 us, full decode <= 1 s,
launcher start close to `/usr/bin/python3 -I -S -c pass`.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from vmreconcile.formats.cdb import CdbReader, build_cdb, build_cdb_pure
from vmreconcile.formats.vpwentry import decode_record, encode_record, user_key
from vmreconcile.install import install_runtime
from vmreconcile.model import VirtualUser
from vmreconcile.tables import iter_users, lookup, open_table

N = 100_000
HASH = "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"


def best(fn, repeat=5):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    users = [VirtualUser(f"user{i}", HASH, f"./users/user{i}", created=1795546316) for i in range(N)]
    items = [(user_key(u.name), encode_record(u)) for u in users]
    t_encode = best(lambda: [(user_key(u.name), encode_record(u)) for u in users], 3)
    t_build = best(lambda: build_cdb(items), 3)
    t_pure = best(lambda: build_cdb_pure(items), 3)
    print(f"encode {N:,} records:              {t_encode:.3f} s")
    print(
        f"write {N:,}-user table (cdbx):     {t_build:.3f} s   (encode+write {t_encode + t_build:.3f} s; target <= 0.5 s)"
    )
    print(f"write {N:,}-user table (pure):     {t_pure:.3f} s")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "passwd.cdb"
        path.write_bytes(build_cdb(items))
        reader = open_table(path)
        names = [f"user{i}" for i in range(0, N, 997)]
        per = []
        for _ in range(5):
            start = time.perf_counter()
            for name in names:
                lookup(reader, name)
            per.append((time.perf_counter() - start) / len(names))
        print(f"one lookup (open table, decode):   {min(per) * 1e6:.1f} us (target <= 20 us)")
        t_open = best(lambda: lookup(open_table(path), "user4242"), 50)
        print(f"open + mmap + one lookup:          {t_open * 1e6:.1f} us")
        t_decode = best(lambda: list(iter_users(open_table(path))), 3)
        print(f"full decode of {N:,} users:        {t_decode:.3f} s (target <= 1 s)")
        assert decode_record(*next(CdbReader(path.read_bytes()).items())).name == "user0"

        bindir = Path(tmp) / "bin"
        install_runtime(bindir, programs=("runtime-selftest",))
        launcher = [str(bindir / "runtime-selftest")]
        bare = ["/usr/bin/python3", "-I", "-S", "-c", "pass"]

        def run(cmd):
            runs = []
            for _ in range(40):
                start = time.perf_counter()
                subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
                runs.append(time.perf_counter() - start)
            return statistics.median(runs)

        t_bare, t_launch = run(bare), run(launcher)
        print(f"/usr/bin/python3 -I -S -c pass:    {t_bare * 1e3:.1f} ms (median of 40)")
        print(f"launcher (runtime-selftest):       {t_launch * 1e3:.1f} ms ({t_launch / t_bare:.2f}x)")


if __name__ == "__main__":
    main()
