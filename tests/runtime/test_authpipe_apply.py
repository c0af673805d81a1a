"""End to end: `vmreconcile apply` marks a password `unmanaged`, Courier's PASSWD changes it, apply keeps it.

The whole path a user's "change password" takes: YAML -> ``apply`` (writes the table and
``/etc/vmailmgr/vmreconcile-passwd-changeable``) -> the real authdaemond -> our authpipe ->
the rewritten table -> a later login, and the next ``plan`` has nothing to undo. A user whose
password the YAML manages is refused.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_authpipe_support import AUTHDAEMOND, LIBAUTHPIPE, Domain, authdaemond, system_user, world_dir

from tests.checkout_cli import CLI
from vmreconcile.formats.hashing import hash_password
from vmreconcile.install import install_runtime

pytestmark = [
    pytest.mark.root,
    pytest.mark.peers,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (system user, mount namespace); CI runs as root"),
    pytest.mark.skipif(
        not (os.path.exists(AUTHDAEMOND) and os.path.exists(LIBAUTHPIPE)),
        reason="needs Debian's courier-authdaemon and courier-authlib-pipe packages",
    ),
]

CONFIG = """\
version: 1
qmail:
  root: /var/qmail
runtime:
  bindir: {bindir}
domains:
  example.test:
    base_user: {base}
    users:
      alice:
        password: {alice}
      bob:
        password: "{bob}"
"""


def vmreconcile(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), "--root", str(root), *args], capture_output=True, text=True, timeout=120)


def test_unmanaged_password_changed_through_courier_and_kept_by_apply() -> None:
    with system_user("vmrapl") as entry, world_dir("vmr-authpipe-apply-") as top:
        root = top / "root"
        (root / "etc" / "vmailmgr").mkdir(parents=True)
        (root / "etc" / "passwd").write_text(
            f"root:x:0:0:root:/root:/bin/sh\n{entry.pw_name}:x:{entry.pw_uid}:{entry.pw_gid}::/home/{entry.pw_name}:/bin/sh\n"
        )
        (root / "etc" / "vmailmgr" / "qmail-root").write_text("/var/qmail\n")
        control = root / "var" / "qmail" / "control"
        control.mkdir(parents=True)
        (control / "me").write_text("mx.example.test\n")
        (control / "locals").write_text("localhost\n")
        home = root / "home" / entry.pw_name
        home.mkdir(parents=True, mode=0o700)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        bindir = top / "bin"
        install_runtime(bindir, root=str(root), libdir=top / "lib", programs=("authpipe",))

        alice, bob = hash_password("alice-1", "md5-crypt"), hash_password("bob-1", "md5-crypt")
        first, second = top / "first.yaml", top / "second.yaml"
        first.write_text(CONFIG.format(bindir=bindir, base=entry.pw_name, alice=f'"{alice}"', bob=bob))
        second.write_text(CONFIG.format(bindir=bindir, base=entry.pw_name, alice="unmanaged", bob=bob))
        for config in (first, second):
            done = vmreconcile(root, "apply", str(config), "--yes")
            assert done.returncode == 0, done.stdout + done.stderr
        changeable = (root / "etc" / "vmailmgr" / "vmreconcile-passwd-changeable").read_text()
        assert f"{entry.pw_name}/alice" in changeable.splitlines()

        dom = Domain(root, entry.pw_name, entry.pw_uid, entry.pw_gid, home, bindir)
        with authdaemond(dom) as courier:
            assert courier.authtest("alice@example.test", "alice-1").returncode == 0
            changed = courier.authtest("alice@example.test", "alice-1", "alice-2")
            assert changed.returncode == 0, changed.stdout + changed.stderr
            assert courier.authtest("alice@example.test", "alice-2").returncode == 0
            assert courier.authtest("alice@example.test", "alice-1").returncode != 0
            refused = courier.authtest("bob@example.test", "bob-1", "bob-2")  # the YAML owns bob's password
            assert refused.returncode != 0
            assert courier.authtest("bob@example.test", "bob-1").returncode == 0

        plan = vmreconcile(root, "plan", str(second), "--detailed-exitcode")
        assert plan.returncode == 0, plan.stdout + plan.stderr  # nothing to undo: alice keeps her password
        again = vmreconcile(root, "apply", str(second), "--yes")
        assert again.returncode == 0, again.stdout + again.stderr
        with authdaemond(dom) as courier:
            assert courier.authtest("alice@example.test", "alice-2").returncode == 0
