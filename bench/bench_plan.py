"""Benchmark: plan and apply at fleet scale (issue 5).

Builds a throwaway rooted host with DOMAINS base users x USERS virtual users each (every user
a maildir on disk, pre-hashed ``$1$`` passwords so no secret is verified), then prints:

* no-op plan of the whole fleet (target <= 5 s), split into live read / resolve / diff, and
  with the YAML load of an exported configuration when ``desired/export.py`` is available;
* plan + apply of a one-user change in that fleet (target <= 1 s for the plan), whole fleet
  read and with ``--domain`` (only the changed domain read);
* first apply of BIG users in one domain from an empty home (maildirs + one table write);
* the cost of verifying one ``{env:}``/``{file:}`` secret per hash scheme (what a plan pays
  per user whose password is given as a secret; none of the figures above include it);
* an ESTIMATE of a VMailMgr ``vadduser`` loop for BIG users: no VMailMgr binaries exist here,
  so it is computed from VMailMgr's algorithm (every call rewrites the whole table, [compat: table-files])
  using our own cdb build+write time per table size, plus one measured process start per call.

Run: ``.venv/bin/python bench/bench_plan.py [--domains 1000 --users 100 --big 10000]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmreconcile.apply.execute import execute
from vmreconcile.desired.spec import DomainSpec, PasswordSpec, Spec, UserSpec
from vmreconcile.formats.cdb import build_cdb
from vmreconcile.formats.hashing import SCHEMES, hash_password, verify_password
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.host import Host
from vmreconcile.model import VirtualUser
from vmreconcile.plan.build import build_plan
from vmreconcile.plan.diff import diff
from vmreconcile.plan.resolve import resolve
from vmreconcile.preflight import check_domains
from vmreconcile.workflow import plan_on_host, read_live_for

NOW = 1_800_000_000
HASH = "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"
POSTMASTER = ("mailer-daemon", "postmaster", "root")


def no_secrets(kind: str, ref: str) -> None:
    return None


def domain_users(users: int) -> list[VirtualUser]:
    entries = [VirtualUser(a, directory=f"users/{a}", forwards=("postmaster@",), created=NOW) for a in POSTMASTER]
    entries += [VirtualUser(f"user{i}", password=HASH, directory=f"./users/user{i}", created=NOW) for i in range(users)]
    return entries


def build_fleet(root: Path, domains: int, users: int) -> None:
    """/etc/passwd, control files and DOMAINS homes, each with a table and every maildir."""
    (root / "etc/vmailmgr").mkdir(parents=True)
    (root / "etc/vmailmgr/qmail-root").write_text("/var/qmail\n")
    control = root / "var/qmail/control"
    control.mkdir(parents=True)
    names = [f"d{i}.example" for i in range(domains)]
    (root / "etc/passwd").write_text(
        "".join(f"b{i}:x:{fleet_uid(i)}:{fleet_uid(i)}::/home/b{i}:/bin/sh\n" for i in range(domains))
    )
    (control / "virtualdomains").write_text("".join(f"{n}:b{i}\n" for i, n in enumerate(names)))
    (control / "rcpthosts").write_text("".join(f"{n}\n" for n in names))
    entries = domain_users(users)
    table = build_cdb((user_key(u.name), encode_record(u)) for u in entries)
    for i in range(domains):
        home = root / "home" / f"b{i}"
        (home / "users").mkdir(parents=True)
        (home / "passwd.cdb").write_bytes(table)
        (home / ".qmail-default").write_text("|/usr/local/bin/vdeliver\n")
        if os.geteuid() == 0:  # plan's preflight wants each home owned by its base user
            os.chown(home, fleet_uid(i), fleet_uid(i))
        for user in entries:
            base = home / user.directory
            for sub in ("cur", "new", "tmp"):
                (base / sub).mkdir(parents=True)


def fleet_uid(i: int) -> int:
    """Base user b<i>'s uid: the caller's own, or as root an unprivileged one per base user
    (plan refuses uid 0 and homes their base user does not own)."""
    return 2000 + i if os.geteuid() == 0 else os.getuid()


def fleet_spec(domains: int, users: int) -> Spec:
    """What export writes for the fleet: every entry explicit, literal hashes."""

    def entry(u: VirtualUser) -> UserSpec:
        return UserSpec(
            name=u.name,
            password=PasswordSpec("hash", u.password),
            forwards=u.forwards,
            directory=u.directory,
            has_mailbox=u.has_mailbox,
            created=u.created,
        )

    entries = tuple(entry(u) for u in domain_users(users))
    return Spec(domains=tuple(DomainSpec(f"d{i}.example", f"b{i}", users=entries, prune=True) for i in range(domains)))


def timed(label: str, func, *args, **kwargs):
    start = time.perf_counter()
    value = func(*args, **kwargs)
    print(f"  {label:<46} {time.perf_counter() - start:8.3f} s")
    return value, time.perf_counter() - start


def bench_fleet(root: Path, domains: int, users: int) -> None:
    print(f"fleet: {domains} domains x {users + len(POSTMASTER)} entries (all maildirs on disk)")
    _, setup = timed("build the fleet (setup, not a product figure)", build_fleet, root, domains, users)
    host = Host(root)
    spec = fleet_spec(domains, users)
    for run in ("first", "second"):
        print(f"no-op plan ({run} run):")
        start = time.perf_counter()
        live, _ = timed("read live state (tables + maildir checks)", read_live_for, host, [])
        (desired, _notes), _ = timed("resolve spec against live", resolve, spec, live, NOW, no_secrets)
        changes, _ = timed("diff", diff, desired, live)
        total = time.perf_counter() - start
        print(f"  {'TOTAL no-op plan (spec in memory)':<46} {total:8.3f} s   changes: {len(changes)}   target <= 5 s")
    print("no-op plan as `plan` runs it (preflight + live read + resolve + diff):")
    timed("preflight alone (a few stat calls per domain)", check_domains, host, spec, spec.domains, [], {})
    (plan, _), _ = timed("plan_on_host", plan_on_host, host, spec, now=NOW)
    assert plan.empty and not plan.errors, plan.errors[:3]
    bench_yaml(root, live)

    print("one-user change in the fleet:")
    mid = spec.domains[domains // 2]
    users_changed = tuple(u.with_changes(personal="changed") if u.name == "user7" else u for u in mid.users)
    changed = replace(
        spec,
        domains=spec.domains[: domains // 2] + (replace(mid, users=users_changed),) + spec.domains[domains // 2 + 1 :],
    )
    start = time.perf_counter()
    live, _ = timed("read live state", read_live_for, host, [])
    plan, _ = timed("resolve + diff", build_plan, changed, live, now=NOW, secrets=no_secrets)
    print(f"  {'TOTAL plan':<46} {time.perf_counter() - start:8.3f} s   changes: {len(plan.changes)}   target <= 1 s")
    result, _ = timed("apply it (one table rewrite)", execute, plan, host)
    assert not result.errors, result.errors

    print("one-user change with --domain (only that domain is read):")
    again = replace(
        changed,
        domains=changed.domains[: domains // 2]
        + (replace(mid, users=tuple(u.with_changes(personal="again") if u.name == "user7" else u for u in mid.users)),)
        + changed.domains[domains // 2 + 1 :],
    )
    targets = (mid.name,)
    start = time.perf_counter()
    live, _ = timed("read live state (one domain)", read_live_for, host, [(mid.name, mid.base_user)], targets)
    plan, _ = timed("resolve + diff", build_plan, again, live, now=NOW, secrets=no_secrets, targets=targets)
    print(
        f"  {'TOTAL plan --domain':<46} {time.perf_counter() - start:8.3f} s   changes: {len(plan.changes)}   "
        "target <= 1 s"
    )


def bench_yaml(root: Path, live) -> None:
    try:
        from vmreconcile.desired.export import export_yaml
        from vmreconcile.desired.load import load_spec
    except ImportError:
        print("  (YAML load not measured: desired/export.py is not in this checkout)")
        return
    config = root / "fleet.yaml"
    config.write_text(export_yaml(live))
    size = config.stat().st_size / 1e6
    timed(f"load_spec of the exported YAML ({size:.1f} MB)", load_spec, config)


def bench_big_domain(root: Path, count: int) -> None:
    print(f"first apply of {count} users in one domain (empty home):")
    (root / "etc/vmailmgr").mkdir(parents=True)
    (root / "etc/vmailmgr/qmail-root").write_text("/var/qmail\n")
    (root / "var/qmail/control").mkdir(parents=True)
    (root / "etc/passwd").write_text(f"big:x:{fleet_uid(0)}:{fleet_uid(0)}::/home/big:/bin/sh\n")
    (root / "home/big").mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(root / "home/big", fleet_uid(0), fleet_uid(0))
    users = tuple(UserSpec(f"user{i}", password=PasswordSpec("hash", HASH)) for i in range(count))
    spec = Spec(domains=(DomainSpec("big.example", "big", users=users),))
    host = Host(root)
    start = time.perf_counter()
    live, _ = timed("read live state", read_live_for, host, [("big.example", "big")])
    plan, _ = timed("plan", build_plan, spec, live, now=NOW, secrets=no_secrets)
    result, _ = timed(f"apply ({len(plan.changes)} changes: maildirs + 1 table write)", execute, plan, host)
    assert not result.errors, result.errors
    print(f"  {'TOTAL first apply':<46} {time.perf_counter() - start:8.3f} s")
    estimate_vadduser_loop(root / "home/big", count)


def estimate_vadduser_loop(home: Path, count: int) -> None:
    """ESTIMATE only: VMailMgr rewrites the whole table on every vadduser ([compat: table-files])."""
    entries = [VirtualUser(f"user{i}", password=HASH, directory=f"./users/user{i}", created=NOW) for i in range(count)]
    samples = sorted({1, count // 4, count // 2, (3 * count) // 4, count})
    per_size = {}
    scratch = home / "estimate.cdb"
    for size in samples:
        start = time.perf_counter()
        scratch.write_bytes(build_cdb((user_key(u.name), encode_record(u)) for u in entries[:size]))
        per_size[size] = time.perf_counter() - start
    scratch.unlink()
    # integrate the (roughly linear) per-call table cost over 1..count by the trapezoid rule
    rewrite = 0.0
    for a, b in zip(samples, samples[1:], strict=False):
        rewrite += (per_size[a] + per_size[b]) / 2 * (b - a)
    start = time.perf_counter()
    for _ in range(50):
        subprocess.run(["/bin/true"], check=True)
    spawn = (time.perf_counter() - start) / 50
    mkdirs = _maildir_cost(home)
    total = rewrite + count * (spawn + mkdirs)
    print(
        f"  ESTIMATE vadduser loop for {count} users: ~{total:.0f} s "
        f"(table rewrites {rewrite:.1f} s + {count} x (process start {spawn * 1e3:.1f} ms + maildir "
        f"{mkdirs * 1e3:.2f} ms)); not measured: no VMailMgr binaries here, MD5-crypt hashing excluded"
    )


def _maildir_cost(home: Path) -> float:
    scratch = home / "estimate-maildirs"
    start = time.perf_counter()
    for i in range(200):
        for sub in ("cur", "new", "tmp"):
            (scratch / str(i) / sub).mkdir(parents=True)
    cost = (time.perf_counter() - start) / 200
    shutil.rmtree(scratch)
    return cost


def bench_secrets() -> None:
    print("secret verification, per user whose password is {env:}/{file:} (not in the figures above):")
    for scheme in SCHEMES:
        stored = hash_password("correct horse", scheme)
        rounds = 3 if scheme in ("yescrypt", "bcrypt") else 20
        start = time.perf_counter()
        for _ in range(rounds):
            assert verify_password("correct horse", stored)
        each = (time.perf_counter() - start) / rounds
        print(f"  {scheme:<14} {each * 1e3:8.2f} ms per verify   ~{each * 100_000:7.0f} s for 100,000 users")


def load_note() -> None:
    one, five, _ = os.getloadavg()
    print(f"(load average {one:.1f} / {five:.1f} on {os.cpu_count()} CPUs when the run started)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: a temp dir)")
    args = parser.parse_args()
    load_note()
    base = Path(tempfile.mkdtemp(prefix="vmr-bench-plan-", dir=args.dir))
    try:
        bench_fleet(base / "fleet", args.domains, args.users - len(POSTMASTER))
        bench_big_domain(base / "big", args.big)
        bench_secrets()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
