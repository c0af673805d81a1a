"""SIGINT and SIGTERM end plan and apply with one line and 128 + the signal, never a traceback,
and leave the host as a crash would: every file old or complete, and the next apply converges."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.plan.reconcile_helpers import empty_root
from vmreconcile.apply.lock import global_lock
from vmreconcile.formats.cdb import CdbReader
from vmreconcile.formats.hashing import hash_password
from vmreconcile.host import Host

CONFIG = """\
domains:
  mydomain.org:
    base_user: myuser
    users:
      me: {password: null}
"""


def start(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vmreconcile", "--root", str(root), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = start(root, *args, env=env)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_one_line(stderr: str, name: str) -> None:
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("vmreconcile: interrupted")]
    assert lines == [
        f"vmreconcile: interrupted by {name}; every file is as it was or complete (never half-written); "
        "run the command again"
    ], stderr


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_apply_waiting_for_the_lock_ends_in_one_line(tmp_path, signum, code):
    root = tmp_path / "root"
    empty_root(root)
    config = tmp_path / "mail.yaml"
    config.write_text(CONFIG)
    host = Host(root)
    with global_lock(host.lock_path, 5):
        proc = start(root, "apply", str(config), "--yes", "--lock-timeout", "60")
        deadline = time.monotonic() + 30
        line = ""
        while "waiting" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()  # "... is running; waiting ..."
        assert "waiting" in line, line
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == code
    assert_one_line(err, signal.Signals(signum).name)
    assert not (root / "home/myuser/passwd.cdb").exists()
    assert run(root, "apply", str(config), "--yes").returncode == 0


@pytest.mark.parametrize("signal_name, code", [("INT", 130), ("TERM", 143)])
@pytest.mark.parametrize("where", ["passwd.cdb: half written", "passwd.cdb: temp synced", "virtualdomains: renamed"])
def test_a_signal_in_the_middle_of_a_write_leaves_old_or_new_and_the_next_apply_converges(
    tmp_path, signal_name, code, where
):
    root = tmp_path / "root"
    home = empty_root(root)
    config = tmp_path / "mail.yaml"
    config.write_text(CONFIG)
    result = run(
        root,
        "apply",
        str(config),
        "--yes",
        env={"VMRECONCILE_CRASH_AT": where, "VMRECONCILE_CRASH_SIGNAL": signal_name},
    )
    assert result.returncode == code, result.stdout + result.stderr
    assert_one_line(result.stderr, "SIG" + signal_name)
    assert not (home / "passwd.cdb.tmp").exists()  # the temp file went with the interrupted write
    if (home / "passwd.cdb").exists():
        assert [k for k, _ in CdbReader((home / "passwd.cdb").read_bytes()).items()]  # complete, decodable
    again = run(root, "apply", str(config), "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert run(root, "plan", str(config), "--detailed-exitcode").returncode == 0


def test_plan_interrupted_while_it_verifies_secrets_ends_in_one_line(tmp_path):
    """A plan that verifies many secrets against yescrypt hashes takes seconds: Ctrl-C then."""
    root = tmp_path / "root"
    empty_root(root)
    stored = hash_password("pw", "yescrypt")
    literal = tmp_path / "literal.yaml"
    users = "".join(f"      u{i}: {{password: '{stored}'}}\n" for i in range(400))
    literal.write_text("domains:\n  mydomain.org:\n    base_user: myuser\n    users:\n" + users)
    assert run(root, "apply", str(literal), "--yes").returncode == 0
    secrets = tmp_path / "secrets.yaml"
    users = "".join(f"      u{i}: {{password: {{env: PW}}}}\n" for i in range(400))
    secrets.write_text("domains:\n  mydomain.org:\n    base_user: myuser\n    users:\n" + users)
    proc = start(root, "plan", str(secrets), env={"PW": "pw"})
    time.sleep(2.0)  # started, loaded, verifying (400 x ~20 ms)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert_one_line(err, "SIGINT")
    assert out == ""
