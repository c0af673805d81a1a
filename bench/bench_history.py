"""Benchmark: what the apply history costs an apply, and what a rollback costs.

Builds a throwaway rooted host with one domain of USERS entries (pre-hashed, no maildirs on
disk needed for the table), then for a one-user change prints:

* the apply alone (`execute`, one table rewrite) and the same apply recorded in the history
  (snapshot of the table before, entry prepared and made durable, the writes, the entry
  committed: what ``vmreconcile apply`` does);
* a rollback of that entry (plan + restore through the writer + its own entry);
* the history's size on disk per entry (it keeps the previous table whole).

Run: ``.venv/bin/python bench/bench_history.py [--users 10000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmreconcile.apply.execute import execute
from vmreconcile.desired.spec import DomainSpec, PasswordSpec, Spec, UserSpec
from vmreconcile.formats.cdb import build_cdb
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.history.origin import Origin
from vmreconcile.history.record import start_apply, store_of
from vmreconcile.history.rollback import carry_out, plan_rollback, start_rollback
from vmreconcile.host import Host
from vmreconcile.model import VirtualUser
from vmreconcile.workflow import plan_on_host

NOW = 1_800_000_000
HASH = "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"


def build_host(top: Path, users: int) -> Host:
    (top / "etc" / "vmailmgr").mkdir(parents=True)
    (top / "etc" / "passwd").write_text(f"vbench:x:{os.getuid()}:{os.getgid()}::/home/vbench:/bin/sh\n")
    (top / "etc" / "vmailmgr" / "qmail-root").write_text("/var/qmail\n")
    control = top / "var" / "qmail" / "control"
    control.mkdir(parents=True)
    (control / "virtualdomains").write_text("bench.example:vbench\n")
    (control / "rcpthosts").write_text("bench.example\n")
    home = top / "home" / "vbench"
    home.mkdir(parents=True)
    (home / ".qmail-default").write_text("|/usr/local/bin/vdeliver\n")
    entries = [VirtualUser(f"user{i}", password=HASH, directory="", created=NOW) for i in range(users)]
    (home / "passwd.cdb").write_bytes(build_cdb((user_key(u.name), encode_record(u)) for u in entries))
    return Host(top)


def spec_with(personal: str) -> Spec:
    user = UserSpec("user0", kind="alias", password=PasswordSpec("hash", HASH), personal=personal)
    return Spec(domains=(DomainSpec("bench.example", "vbench", users=(user,)),))


def timed(action) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    top = Path(tempfile.mkdtemp(prefix="bench-history-"))
    try:
        host = build_host(top, args.users)
        origin = Origin(command="apply", user="bench", uid=os.getuid())
        quiet = lambda _message: None  # noqa: E731
        plain, recorded, rollback = [], [], []
        store = store_of(host)
        for n in range(args.rounds):
            plan, _ = plan_on_host(host, spec_with(f"plain {n}"), now=NOW)
            plain.append(timed(lambda plan=plan: execute(plan, host)))
            plan, _ = plan_on_host(host, spec_with(f"recorded {n}"), now=NOW)

            def apply_recorded(plan=plan) -> None:  # type: ignore[no-untyped-def]
                recording = start_apply(host, plan, origin, log=quiet, warn=quiet)
                result = execute(plan, host)
                recording.finish(wrote=bool(result.written), errors=result.errors)

            recorded.append(timed(apply_recorded))
            latest = store.ids()[-1]

            def roll_back(latest=latest) -> None:  # type: ignore[no-untyped-def]
                rplan = plan_rollback(host, store, latest)
                recording = start_rollback(host, rplan, log=quiet, warn=quiet)
                result = carry_out(host, rplan, quiet)
                recording.finish(wrote=bool(result.written), errors=result.errors)

            rollback.append(timed(roll_back))
        table = (top / "home" / "vbench" / "passwd.cdb").stat().st_size
        sizes = [sum(p.stat().st_size for p in (store.directory / f"{i:06d}").iterdir()) for i in store.ids()]
        print(f"one-user change in a {args.users}-entry table ({table / 1e6:.2f} MB), median of {args.rounds}:")
        print(f"  apply without history (execute only): {statistics.median(plain) * 1000:7.1f} ms")
        print(f"  apply recorded in the history:        {statistics.median(recorded) * 1000:7.1f} ms")
        print(f"  rollback of that entry (recorded):    {statistics.median(rollback) * 1000:7.1f} ms")
        print(f"  history size per apply entry:         {max(sizes) / 1e6:7.2f} MB (the previous table, whole)")
        print(f"  load average: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
