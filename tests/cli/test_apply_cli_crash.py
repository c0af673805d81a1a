"""The real program, SIGKILLed mid-write, then run again with production settings: it converges alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

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
    return subprocess.run([sys.executable, "-c", "from vmreconcile.cli.main import main; main()",
                           "--root", str(root), *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)


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
