"""Plan refuses a qmail root, ``control/`` or ``/etc/vmailmgr`` that someone other than root
(or, under --root, the invoking user) could redirect: apply writes there as root.

The attack: a YAML ``qmail.root`` pointing into a tenant's home, where the tenant made
``control/virtualdomains`` a symlink to a file of root's (here a stand-in for /etc/passwd).
Before the fix apply wrote through it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli.test_qmail_root_cli import bare_root
from tests.conftest import IS_ROOT, TREE_GID, TREE_UID, cli_as_user, requires_root
from vmreconcile.host import untrusted_directory


def vmr(root, *args):
    return subprocess.run(
        [sys.executable, "-m", "vmreconcile", "--root", str(root), *args], capture_output=True, text=True
    )


def tree(tmp_path):
    """A --root with base user myuser (owning its home), /etc/vmailmgr and /var/qmail/control."""
    root = bare_root(tmp_path)
    (root / "var" / "qmail" / "control").mkdir(parents=True)
    config = tmp_path / "mail.yaml"
    config.write_text("domains:\n  mydomain.org:\n    base_user: myuser\n")
    return root, config


def assert_refused(result, *expected):
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


@requires_root
def test_a_qmail_root_in_a_tenants_home_is_refused_and_nothing_is_written_through_its_links(tmp_path):
    root, config = tree(tmp_path)
    victim = root / "etc" / "shadow-standin"
    victim.write_text("root:secret\n")
    evil = root / "home" / "myuser" / "q" / "control"
    evil.mkdir(parents=True)
    (evil / "virtualdomains").symlink_to(victim)
    for path in (evil.parent, evil):
        os.chown(path, TREE_UID, TREE_GID)
    config.write_text("qmail:\n  root: /home/myuser/q\ndomains:\n  mydomain.org:\n    base_user: myuser\n")

    planned = vmr(root, "plan", str(config))
    assert_refused(planned, f"{root}/home/myuser/q: the qmail root is not safe for root to write into", "uid 4242")
    applied = vmr(root, "apply", str(config), "--yes")
    assert_refused(applied, "not safe for root to write into")
    assert victim.read_text() == "root:secret\n"
    assert not (root / "home" / "myuser" / ".qmail-default").exists()


@requires_root
def test_a_control_directory_that_is_a_symlink_into_a_tenants_home_is_refused(tmp_path):
    root, config = tree(tmp_path)
    control = root / "var" / "qmail" / "control"
    control.rmdir()
    elsewhere = root / "home" / "myuser" / "control"
    elsewhere.mkdir()
    os.chown(elsewhere, TREE_UID, TREE_GID)
    control.symlink_to(elsewhere)

    result = vmr(root, "plan", str(config))
    assert_refused(
        result, f"{control}: qmail's control directory is not safe", f"{elsewhere.parent} is owned by uid 4242"
    )


def test_a_world_writable_control_directory_is_refused(tmp_path):
    root, config = tree(tmp_path)
    control = root / "var" / "qmail" / "control"
    control.chmod(0o777)
    result = vmr(root, "plan", str(config))
    assert_refused(result, f"{control} is writable by group and others (mode 0777)")
    control.chmod(0o775)
    assert_refused(vmr(root, "plan", str(config)), f"{control} is writable by group (mode 0775)")
    control.chmod(0o755)
    assert vmr(root, "plan", str(config)).returncode == 0


@requires_root
def test_a_vmailmgr_config_directory_owned_by_someone_else_is_refused(tmp_path):
    root, config = tree(tmp_path)
    etc = root / "etc" / "vmailmgr"
    os.chown(etc, TREE_UID, TREE_GID)
    assert_refused(vmr(root, "plan", str(config)), f"{etc}: the vmailmgr configuration directory is not safe")


@requires_root
def test_a_symlinked_control_file_into_a_directory_others_control_is_refused(tmp_path):
    root, config = tree(tmp_path)
    shared = root / "srv" / "shared"
    shared.mkdir(parents=True)
    os.chown(shared, TREE_UID, TREE_GID)
    (shared / "rcpthosts").write_text("localhost\n")
    (root / "var" / "qmail" / "control" / "rcpthosts").symlink_to(shared / "rcpthosts")
    result = vmr(root, "apply", str(config), "--yes")
    assert_refused(result, "rcpthosts: is a symbolic link into a directory root must not write into")
    assert (shared / "rcpthosts").read_text() == "localhost\n"


@requires_root
def test_a_symlinked_option_file_into_a_directory_others_control_is_refused(tmp_path):
    root, config = tree(tmp_path)
    shared = root / "home" / "myuser" / "opts"
    shared.mkdir()
    os.chown(shared, TREE_UID, TREE_GID)
    (shared / "separators").write_text("@\n")
    (root / "etc" / "vmailmgr" / "separators").symlink_to(shared / "separators")
    config.write_text('vmailmgr: {separators: "@:"}\ndomains:\n  mydomain.org:\n    base_user: myuser\n')
    result = vmr(root, "apply", str(config), "--yes")
    assert_refused(result, "etc/vmailmgr/separators: is a symbolic link into a directory root must not write into")
    assert (shared / "separators").read_text() == "@\n"


def test_a_missing_vmailmgr_directory_is_made_by_apply(tmp_path):
    root, config = tree(tmp_path)
    (root / "etc" / "vmailmgr").rmdir()
    result = vmr(root, "plan", str(config))
    assert result.returncode == 0, result.stderr


@requires_root
def test_as_an_ordinary_user_a_tree_of_ones_own_passes_and_anothers_does_not(public_tmp, make_system_user):
    """Under --root the invoking user owns the tree (the demo, tests): that passes; a tree
    another ordinary user owns does not."""
    me, other = make_system_user(), make_system_user()
    root = public_tmp / "root"
    (root / "etc" / "vmailmgr").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(f"myuser:x:{me.uid}:{me.gid}::/home/myuser:/bin/sh\n")
    (root / "home" / "myuser").mkdir(parents=True)
    (root / "var" / "qmail" / "control").mkdir(parents=True)
    config = public_tmp / "mail.yaml"
    config.write_text("domains:\n  mydomain.org:\n    base_user: myuser\n")
    for dirpath, dirnames, filenames in os.walk(public_tmp):
        for name in [*dirnames, *filenames]:
            os.chown(os.path.join(dirpath, name), me.uid, me.gid)

    os.chown(root / "var" / "qmail", other.uid, other.gid)
    os.chmod(root / "var" / "qmail", 0o755)
    assert_refused(
        cli_as_user(me, "--root", str(root), "apply", str(config), "--yes", cwd=public_tmp),
        f"{root}/var/qmail is owned by uid {other.uid}",
    )
    os.chown(root / "var" / "qmail", me.uid, me.gid)
    done = cli_as_user(me, "--root", str(root), "apply", str(config), "--yes", cwd=public_tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "var" / "qmail" / "control" / "virtualdomains").read_text() == "mydomain.org:myuser\n"


def test_untrusted_directory_walks_links_and_judges_sticky_directories(tmp_path):
    """The walk itself, on real directories, without --root (every directory from / counts)."""
    uid = os.geteuid()
    other = uid + 1 if not IS_ROOT else 4242
    top = tmp_path / "t"
    (top / "safe" / "control").mkdir(parents=True)
    (top / "link").symlink_to(top / "safe")
    assert untrusted_directory(str(top / "link" / "control"), {0, uid}) is None
    sticky = top / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "mine").mkdir()
    assert untrusted_directory(str(sticky / "mine"), {0, uid}) is None  # nobody else can replace it
    sticky.chmod(0o0777)
    assert "writable by group and others" in (untrusted_directory(str(sticky / "mine"), {0, uid}) or "")
    if not IS_ROOT:
        pytest.skip("giving a directory to another uid needs root")
    os.chown(top / "safe", other, other)
    assert untrusted_directory(str(top / "link" / "control"), {0, uid}) == f"{top / 'safe'} is owned by uid {other}"
    sticky.chmod(0o1777)
    os.chown(sticky / "mine", other, other)
    assert "writable by group and others" in (untrusted_directory(str(sticky / "mine"), {0, uid}) or "")
