"""Validation speed: a generated 100,000-user configuration must validate in 5 s or less.

Prints the size of the file, the time of each stage (YAML read, schema, semantic checks +
Spec) and the total of `check_config` (best of --repeat runs). Exit 1 if the total is over
the budget, so CI can run it as a check.

    .venv/bin/python bench/bench_validate.py [--users N] [--repeat R] [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmreconcile.desired.load import _collector_paused, check_config, merge_documents
from vmreconcile.desired.schema import schema_errors
from vmreconcile.desired.semantics import build_spec
from vmreconcile.desired.yamlread import read_yaml

HASH = "$y$j9T$.xuLG97L.5mm1Cb.iaR77ZiN4TFuoV7JnkTG4VcKU7D$dbiJWvXm8aJ3ExDuTVg61rZEyILfD8WLC/enZxR3KZ0"


def generate(users: int, domains: int = 10) -> str:
    """A realistic config: domains with wildcard/aliases, users with hashes, quotas, forwards, aliases."""
    lines = ["version: 1", "vmailmgr:", "  default-hardquota: 500 MiB", "domains:"]
    per_domain = users // domains
    for d in range(domains):
        lines += [
            f"  d{d}.example:",
            f"    base_user: vd{d}",
            "    wildcard: true",
            f"    domain_aliases: [d{d}.example.net]",
            "    catch_all: u0",
            "    users:",
        ]
        for u in range(per_domain):
            lines.append(f"      u{u}:")
            lines.append(f'        password: "{HASH}"')
            if u % 3 == 0:
                lines.append("        hard_quota: 1 GiB")
                lines.append(f"        forwards: [u{u}@backup.example]")
            if u % 5 == 0:
                lines.append(f"        aliases: [a{u}]")
            if u % 7 == 0:
                lines.append("        expires: 2027-06-30")
        lines.append("    aliases:")
        for a in range(per_domain // 10):
            lines.append(f"      team{a}: [u{a}, u{a + 1}, boss@elsewhere.example]")
    return "\n".join(lines) + "\n"


def best(fn, repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs (stages run with the collector paused, as check_config does)."""
    times, result = [], None
    for _ in range(repeat):
        with _collector_paused():
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        path.write_text(generate(args.users))
        raw = path.read_bytes()
        t_read, (doc, _) = best(lambda: read_yaml(raw, str(path)), args.repeat)
        doc, _ = merge_documents([(str(path), doc)])
        t_schema, errors = best(lambda: schema_errors(doc), args.repeat)
        t_sem, (spec, diags) = best(lambda: build_spec(doc, (str(path),)), args.repeat)
        t_total, result = best(lambda: check_config(path), args.repeat)
    entries = sum(len(d.users) for d in result.spec.domains) if result.spec else 0
    print(f"config: {args.users} users in {len(raw) / 1e6:.1f} MB ({entries} entries incl. aliases)")
    print(f"yaml read:        {t_read:6.2f} s")
    print(f"schema:           {t_schema:6.2f} s  ({len(errors)} errors)")
    print(f"semantics + Spec: {t_sem:6.2f} s  ({len(diags)} diagnostics)")
    print(f"check_config:     {t_total:6.2f} s  (best of {args.repeat}; budget {args.budget:.1f} s)")
    if result.errors:
        print("unexpected errors:", *map(str, result.errors[:5]), sep="\n  ")
        return 1
    return 0 if t_total <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
