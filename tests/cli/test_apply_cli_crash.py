"""The real program, SIGKILLed mid-write, then run again with production settings: it converges alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import TREE_GID, TREE_UID, own_home
from tests.plan.reconcile_helpers import empty_root
from vmreconcile.formats.cdb import CdbReader

REPO = Path(__file__).resolve().parents[2]
CONFIG = """\
domains:
  mydomain.org:
    base_user: myuser
    catch_all: me
    users:
      me: {password: null, aliases: [myself]}
"""


def vmreconcile(root: Path, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VMRECONCILE_CRASH_AT"}
    if crash_at is not None:
        env["VMRECONCILE_CRASH_AT"] = str(crash_at)
    return subprocess.run(
        [sys.executable, "-c", "from vmreconcile.cli.main import main; main()", "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_killed_while_writing_the_table_then_the_next_run_removes_the_stale_temp_and_converges(tmp_path):
    root = tmp_path / "root"
    home = empty_root(root)
    config = tmp_path / "mail.yaml"
    config.write_text(CONFIG)
    killed = vmreconcile(root, "apply", str(config), "--yes", crash_at="passwd.cdb: half written")
    assert killed.returncode == -signal.SIGKILL
    assert (home / "passwd.cdb.tmp").exists() and not (home / "passwd.cdb").exists()
    again = vmreconcile(root, "apply", str(config), "--yes")
    assert again.returncode == 0, again.stderr
    assert "removed stale" in again.stdout and "passwd.cdb.tmp" in again.stdout
    assert not (home / "passwd.cdb.tmp").exists()
    keys = [key for key, _ in CdbReader((home / "passwd.cdb").read_bytes()).items()]
    assert keys == [b"mailer-daemon", b"postmaster", b"root", b"me", b"myself", b"+"]
    final = vmreconcile(root, "plan", str(config), "--detailed-exitcode")
    assert final.returncode == 0, final.stdout


def test_real_process_killed_after_random_delays_always_leaves_old_or_new_tables(tmp_path, monkeypatch):
    import random
    import shutil
    import time

    from vmreconcile import atomic
    from vmreconcile.apply.execute import execute
    from vmreconcile.desired.load import load_spec
    from vmreconcile.host import Host
    from vmreconcile.workflow import plan_on_host

    base = tmp_path / "base"
    home = empty_root(base)
    small = tmp_path / "small.yaml"
    small.write_text(CONFIG)
    assert vmreconcile(base, "apply", str(small), "--yes").returncode == 0
    old_table = (home / "passwd.cdb").read_bytes()
    big = tmp_path / "big.yaml"
    big.write_text(CONFIG + "".join(f"      u{i}: {{password: null}}\n" for i in range(1500)))
    monkeypatch.setattr(atomic, "STALE_AFTER", 0.0)
    rng = random.Random(5)
    for attempt in range(4):
        root = tmp_path / f"run{attempt}"
        shutil.copytree(base, root, symlinks=True)
        own_home(root / "home/myuser", TREE_UID, TREE_GID)  # copytree does not copy owners
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from vmreconcile.cli.main import main; main()",
                "--root",
                str(root),
                "apply",
                str(big),
                "--yes",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        table = (root / "home/myuser/passwd.cdb").read_bytes()
        keys = [k for k, _ in CdbReader(table).items()]  # decodable
        assert table == old_table or len(keys) == 1506, attempt
        spec = load_spec(big)
        plan, _ = plan_on_host(Host(root), spec)
        assert execute(plan, Host(root)).errors == []
        assert plan_on_host(Host(root), spec)[0].changes == ()
        shutil.rmtree(root)
