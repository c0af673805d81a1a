"""vauthd's user listing over a table of aliases: how long one step of the listing holds the loop.

Run: ``.venv/bin/python bench/bench_vauthd_listing.py [--aliases N]`` (no root needed).

A rooted throwaway host (the step-11 fixture) whose base user's table holds ``me`` plus N alias
records (default 1,000,000, about 58 MB: no mailbox, so they give no row). It times every
``next()`` of `Answers.iterate` (``doveadm user '*'``): the longest is how long vauthd's one
thread is away from other connections (the server returns to its loop at each empty chunk),
and the total is the time of the whole listing. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import build_step_root

from vmreconcile.formats.cdb import build_cdb
from vmreconcile.formats.hashing import hash_password
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.host import Host
from vmreconcile.model import VirtualUser
from vmreconcile.runtime.dovecot.answers import ITERATION_PAUSE_RECORDS, Answers
from vmreconcile.runtime.dovecot.protocol import Iterate
from vmreconcile.runtime.dovecot.tablecache import CopiedTables


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--aliases", type=int, default=1_000_000)
    args = parser.parse_args()
    top = Path(tempfile.mkdtemp(prefix="vmr-bench-listing-"))
    try:
        root = top / "root"
        home = build_step_root("11-after-deliveries", root)
        me = VirtualUser(name="me", password=hash_password("secret", "md5-crypt"), directory="./users/me")
        alias = encode_record(VirtualUser(name="a", password="*", directory="", forwards=("x@y",)))
        items = [(user_key("me"), encode_record(me))] + [(b"alias%d" % i, alias) for i in range(args.aliases)]
        table = build_cdb(items)
        (home / "passwd.cdb").write_bytes(table)
        answers = Answers(CopiedTables(Host(root)), lambda message: None)
        rows = answers.iterate(Iterate(0, 0, "shared/userdb/", ""))
        steps, longest, produced = [], 0.0, 0
        started = time.perf_counter()
        while True:
            before = time.perf_counter()
            try:
                chunk = next(rows)
            except StopIteration:
                break
            took = time.perf_counter() - before
            steps.append(took)
            longest = max(longest, took)
            produced += bool(chunk)
        total = time.perf_counter() - started
        first = steps[0]
        steps.sort()
        print(
            f"table: {len(table) / 1e6:.0f} MB, {args.aliases:,} aliases, pause every {ITERATION_PAUSE_RECORDS} records"
        )
        print(f"listing: {total:.2f} s, {produced} non-empty chunks, {len(steps):,} steps")
        later = sorted(steps)[:-1] if first == longest else steps
        print(f"first step (reads the table into vauthd's private copy): {first * 1000:.1f} ms")
        print(
            f"one step: median {steps[len(steps) // 2] * 1000:.2f} ms, longest after the first {later[-1] * 1000:.1f} ms"
        )
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
