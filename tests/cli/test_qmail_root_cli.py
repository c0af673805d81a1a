"""The YAML's ``qmail.root`` is where plan reads and apply writes the control files."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import TREE_GID, TREE_UID, own_home


def vmr(root, *args):
    return subprocess.run(
        [sys.executable, "-m", "vmreconcile", "--root", str(root), *args], capture_output=True, text=True
    )


def bare_root(tmp_path):
    """A --root with base user myuser (owning its home) and /etc/vmailmgr, no qmail."""
    root = tmp_path / "root"
    (root / "etc" / "vmailmgr").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(f"myuser:x:{TREE_UID}:{TREE_GID}::/home/myuser:/bin/sh\n")
    (root / "home" / "myuser").mkdir(parents=True)
    own_home(root / "home" / "myuser", TREE_UID, TREE_GID)
    return root


def test_apply_writes_control_files_under_the_configured_qmail_root(tmp_path):
    root = bare_root(tmp_path)
    control = root / "opt" / "qmail" / "control"
    control.mkdir(parents=True)
    (control / "rcpthosts").write_text("localhost\n# kept\n")
    config = tmp_path / "mail.yaml"
    config.write_text("qmail:\n  root: /opt/qmail\ndomains:\n  mydomain.org:\n    base_user: myuser\n")

    applied = vmr(root, "apply", str(config), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert (control / "virtualdomains").read_text() == "mydomain.org:myuser\n"
    assert (control / "rcpthosts").read_text() == "localhost\n# kept\nmydomain.org\n"
    assert not (root / "var" / "qmail").exists()
    assert (root / "etc" / "vmailmgr" / "qmail-root").read_text() == "/opt/qmail\n"  # the runtime agrees

    again = vmr(root, "plan", str(config), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr


def test_symlinked_control_and_option_files_are_written_through(tmp_path):
    """qmail's control directory and /etc/vmailmgr are root's: an admin's symlink there stays."""
    root = bare_root(tmp_path)
    control = root / "var" / "qmail" / "control"
    control.mkdir(parents=True)
    shared = root / "srv" / "shared"
    shared.mkdir(parents=True)
    (shared / "rcpthosts").write_text("localhost\n")
    (control / "rcpthosts").symlink_to(shared / "rcpthosts")
    (shared / "separators").write_text("@\n")
    (root / "etc" / "vmailmgr" / "separators").symlink_to(shared / "separators")
    config = tmp_path / "mail.yaml"
    config.write_text('vmailmgr: {separators: "@:"}\ndomains:\n  mydomain.org:\n    base_user: myuser\n')

    applied = vmr(root, "apply", str(config), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert (control / "rcpthosts").is_symlink() and (shared / "rcpthosts").read_text() == "localhost\nmydomain.org\n"
    assert (root / "etc/vmailmgr/separators").is_symlink() and (shared / "separators").read_text() == "@:\n"
    assert vmr(root, "plan", str(config), "--detailed-exitcode").returncode == 0
