"""How long a checkvpw login takes, against the bare interpreter start-up it cannot avoid.

Run as root: ``.venv/bin/python bench/bench_checkvpw.py [ROUNDS]``. Builds a throwaway
world (base user + step-11 fixture table, launcher baked to a temp root, as the tests do),
then times, interleaved so machine noise hits all equally:

* ``python3 -I -S -c pass``                      the floor: Debian's interpreter start-up
* ``python3 -I -S -c "import vmreconcile.host"`` what launch.py imports before any login code
* ``checkvpw /bin/true Maildir``                  successful login of ``me`` (a ``$1$`` hash)
* the same with a wrong password                  the failure path
* ``/bin/true`` alone                             the child checkvpw runs, for reference

Prints median and mean wall time per run (ms) and the login/floor ratio (target <= 1.5).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "runtime"))

from loginkit import create_world, destroy_world, run_fd3

GOOD = b"me@mydomain.org\0secret\0\0"
BAD = b"me@mydomain.org\0wrong\0\0"


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root: checkvpw must start as root")
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    world = create_world(programs=("checkvpw",))
    libdir = world.root / "usr" / "local" / "lib" / "vmreconcile-runtime"
    try:
        cases = {
            "python3 -I -S -c pass": (["/usr/bin/python3", "-I", "-S", "-c", "pass"], None),
            "python3 -I -S import vmreconcile.host": (
                [
                    "/usr/bin/python3",
                    "-I",
                    "-S",
                    "-c",
                    f"import sys; sys.path.insert(0, {str(libdir)!r}); import vmreconcile.host",
                ],
                None,
            ),
            "checkvpw login ($1$, ok)": ([world.launcher("checkvpw"), "/bin/true", "Maildir"], GOOD),
            "checkvpw login (bad password)": ([world.launcher("checkvpw"), "/bin/true", "Maildir"], BAD),
            "/bin/true": (["/bin/true"], None),
        }
        for argv, fd3 in cases.values():  # warm caches, check it works
            result = run_fd3(argv, fd3)
            assert result.code in (0, 1), (argv, result)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, (argv, fd3) in cases.items():
                start = time.perf_counter()
                run_fd3(argv, fd3)
                times[name].append((time.perf_counter() - start) * 1000)
        print(f"{rounds} rounds, interleaved; wall time per run in ms")
        print(f"{'case':42} {'median':>8} {'mean':>8} {'min':>8}")
        for name, values in times.items():
            print(f"{name:42} {statistics.median(values):8.2f} {statistics.mean(values):8.2f} {min(values):8.2f}")
        floor = statistics.median(times["python3 -I -S -c pass"])
        login = statistics.median(times["checkvpw login ($1$, ok)"])
        host = statistics.median(times["python3 -I -S import vmreconcile.host"])
        print(f"ratio login / bare interpreter (median): {login / floor:.2f}  (target <= 1.5)")
        print(f"ratio foundation imports / bare interpreter: {host / floor:.2f}")
    finally:
        destroy_world(world)


if __name__ == "__main__":
    main()
