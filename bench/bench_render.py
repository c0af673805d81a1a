"""Benchmark: rendering big plans (issue 14) — what showing a plan costs on top of making it.

Builds two plans in memory (no host needed): the first plan of one 100,000-user domain (half
the users alike, half each with its own quota: 200,009 changes) and the first plan of a fleet
of DOMAINS x USERS (every domain alike). Prints, best of --repeat runs, the time of each
output: text in its three views, markdown (cut to one GitHub comment) and JSON, and the size
of each. The grouping is the expensive part of the text and markdown views (one shape per
change); JSON is a dump of every change.

Run: ``.venv/bin/python bench/bench_render.py [--users 100000 --domains 1000 --per-domain 100]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmreconcile.desired.spec import DomainSpec, PasswordSpec, Spec, UserSpec
from vmreconcile.model import HostState
from vmreconcile.plan.build import build_plan
from vmreconcile.plan.changes import Plan
from vmreconcile.plan.render import render_json, render_markdown, render_text

NOW = 1_800_000_000
HASH = "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"


def no_secrets(kind: str, ref: str) -> None:
    return None


def big_domain_plan(users: int) -> Plan:
    entries = tuple(
        UserSpec(f"u{i:06d}", password=PasswordSpec("hash", HASH), hard_quota=(i + 1) * 1024 if i % 2 else 1024**3)
        for i in range(users)
    )
    return build_plan(
        Spec(domains=(DomainSpec("example.org", "vexample", users=entries),)), HostState(), now=NOW, secrets=no_secrets
    )


def fleet_plan(domains: int, per_domain: int) -> Plan:
    entries = tuple(UserSpec(f"user{i}", password=PasswordSpec("hash", HASH)) for i in range(per_domain))
    specs = tuple(DomainSpec(f"d{d}.example", f"b{d}", users=entries) for d in range(domains))
    return build_plan(Spec(domains=specs), HostState(), now=NOW, secrets=no_secrets)


def best(render: Callable[[], str], repeat: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        out = render()
        times.append(time.perf_counter() - start)
    return min(times), out


def report(name: str, plan: Plan, repeat: int) -> None:
    print(f"{name}: {len(plan.changes):,} changes")
    outputs = {
        "text (default: grouped, one screen)": lambda: render_text(plan),
        "text --compact": lambda: render_text(plan, view="compact"),
        "text --detail": lambda: render_text(plan, view="detail"),
        "markdown (one comment)": lambda: render_markdown(plan),
        "json": lambda: render_json(plan),
    }
    for label, render in outputs.items():
        seconds, out = best(render, repeat)
        print(f"  {label:<38} {seconds:6.2f} s  {out.count(chr(10)):>9,} lines  {len(out):>12,} characters")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--per-domain", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report(f"first plan of one {args.users:,}-user domain", big_domain_plan(args.users), args.repeat)
    report(
        f"first plan of {args.domains:,} domains x {args.per_domain:,} users",
        fleet_plan(args.domains, args.per_domain),
        args.repeat,
    )


if __name__ == "__main__":
    main()
