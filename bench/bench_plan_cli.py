"""Benchmark: `vmreconcile plan` from the command line on a fleet, YAML load included (issue 14).

What an admin or CI waits for: a new process that loads the YAML, checks it, reads the live
state of every domain and prints the plan. Builds the fleet of ``bench_plan.py`` (DOMAINS base
users x USERS entries, every maildir on disk), exports its configuration to one YAML file, then
times ``vmreconcile --root DIR plan fleet.yaml`` as a subprocess:

* cold: no cache (the first plan on a host, or after ``rm -rf /var/cache/vmreconcile``);
* warm no-op: the same plan again (what CI runs on every push);
* one-user change: one user's ``personal`` field edited in the YAML, cache warm for the rest;
* ``--no-cache`` no-op, for comparison.

Each figure is the median of RUNS runs (the cache is rebuilt before each cold run). Target
(issue 14): no-op and one-user plans <= 2 s on a 2-core machine.

Run: ``.venv/bin/python bench/bench_plan_cli.py [--domains 1000 --users 100 --runs 3]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_plan import POSTMASTER, build_fleet, load_note

from vmreconcile.desired.export import export_yaml
from vmreconcile.host import Host
from vmreconcile.workflow import read_live_for

COMMAND = Path(sys.executable).with_name("vmreconcile")


def plan(root: Path, config: Path, *extra: str) -> tuple[float, int]:
    """Seconds for one `vmreconcile plan` process and its exit code (0 clean, 2 changes)."""
    start = time.perf_counter()
    done = subprocess.run(
        [str(COMMAND), "--root", str(root), *extra, "plan", "--format", "json", "--detailed-exitcode", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 2):
        raise SystemExit(f"plan failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return elapsed, done.returncode


def median(label: str, runs: int, before, root: Path, config: Path, *extra: str) -> None:
    times = []
    code = None
    for _ in range(runs):
        before()
        seconds, code = plan(root, config, *extra)
        times.append(seconds)
    verdict = "changes pending" if code == 2 else "no changes"
    print(f"  {label:<40} {statistics.median(times):7.2f} s  (min {min(times):.2f}, {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: a temp dir)")
    args = parser.parse_args()
    load_note()
    base = Path(tempfile.mkdtemp(prefix="vmr-bench-cli-", dir=args.dir))
    root = base / "fleet"
    try:
        build_fleet(root, args.domains, args.users - len(POSTMASTER))
        config = base / "fleet.yaml"
        config.write_text(export_yaml(read_live_for(Host(root), [])))
        cache = root / "var/cache/vmreconcile"
        text = config.read_text()
        marker = "\n      user1:\n"  # a user entry of a domain in the middle of the file
        middle = text.index(marker, len(text) // 2) + len(marker)
        changed = text[:middle] + "        personal: changed by the benchmark\n" + text[middle:]
        print(
            f"`vmreconcile plan` of {args.domains} domains x {args.users} entries "
            f"({config.stat().st_size / 1e6:.1f} MB of YAML), median of {args.runs}:"
        )

        def no_cache() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        def nothing() -> None:
            pass

        median("cold cache, no-op", args.runs, no_cache, root, config)
        median("warm cache, no-op", args.runs, nothing, root, config)
        median("--no-cache, no-op", args.runs, nothing, root, config, "--no-cache")
        config.write_text(changed)
        plan(root, config)  # the first plan of the change fills the cache for the changed part
        config.write_text(text)
        plan(root, config)

        def edit() -> None:
            # a new edit each time (another modification time), as a pull request would make
            config.write_text(changed)

        median("warm cache, one-user change", args.runs, edit, root, config)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
