"""Inside a base user's home nothing planted is followed: symlinks/hardlinks are refused or replaced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.conftest import requires_root
from tests.plan.reconcile_helpers import empty_root, howto_spec, tree
from vmreconcile.apply.execute import execute
from vmreconcile.host import Host
from vmreconcile.workflow import plan_on_host

NOW = 1_795_546_316


def victim(tmp_path: Path) -> Path:
    """A file outside the home that an attacker would like vmreconcile to overwrite."""
    target = tmp_path / "outside" / "precious"
    target.parent.mkdir()
    target.write_text("do not touch\n")
    return target


def apply_howto(root: Path):
    host = Host(root)
    plan, _ = plan_on_host(host, howto_spec(), now=NOW)
    return execute(plan, host)


def test_symlinked_table_is_refused_at_plan_time(tmp_path):
    home = empty_root(tmp_path / "root")
    target = victim(tmp_path)
    (home / "passwd.cdb").symlink_to(target)
    plan, _ = plan_on_host(Host(tmp_path / "root"), howto_spec(), now=NOW)
    assert plan.changes == ()
    assert plan.errors == (f"domain mydomain.org: {home}/passwd.cdb: is a symbolic link; refusing to follow it",)
    assert target.read_text() == "do not touch\n"


def test_symlinked_users_dir_is_refused(tmp_path):
    home = empty_root(tmp_path / "root")
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    host = Host(tmp_path / "root")
    plan, _ = plan_on_host(host, howto_spec(), now=NOW)
    (home / "users").symlink_to(outside)
    refused, _ = plan_on_host(host, howto_spec(), now=NOW)
    assert refused.changes == ()
    assert refused.errors == (f"domain mydomain.org: {home}/users: is a symbolic link; refusing to follow it",)
    result = execute(plan, host)  # planted between plan and apply
    assert result.errors and "symbolic link" in result.errors[0]
    assert list(outside.iterdir()) == []
    assert not (home / "passwd.cdb").exists()


def test_symlinked_maildir_parent_is_refused(tmp_path):
    home = empty_root(tmp_path / "root")
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    (home / "users").mkdir()
    (home / "users" / "me").symlink_to(outside)
    result = apply_howto(tmp_path / "root")
    assert any("users/me" in e and "symbolic link" in e for e in result.errors)
    assert list(outside.iterdir()) == []


def test_symlinked_qmail_default_is_refused_at_plan_time_and_replaced_not_written_through(tmp_path):
    home = empty_root(tmp_path / "root")
    target = victim(tmp_path)
    host = Host(tmp_path / "root")
    plan, _ = plan_on_host(host, howto_spec(), now=NOW)
    (home / ".qmail-default").symlink_to(target)
    refused, _ = plan_on_host(host, howto_spec(), now=NOW)
    assert refused.errors == (f"domain mydomain.org: {home}/.qmail-default: is a symbolic link; refusing to follow it",)
    assert execute(plan, host).errors == []  # planted after the plan: the rename replaces it
    assert target.read_text() == "do not touch\n"
    assert stat.S_ISREG((home / ".qmail-default").lstat().st_mode)
    assert (home / ".qmail-default").read_text() == "|/usr/local/bin/vdeliver\n"


def test_planted_temp_symlink_is_removed_not_followed(tmp_path):
    home = empty_root(tmp_path / "root")
    target = victim(tmp_path)
    (home / "passwd.cdb.tmp").symlink_to(target)
    assert apply_howto(tmp_path / "root").errors == []
    assert target.read_text() == "do not touch\n"
    assert not (home / "passwd.cdb.tmp").exists() and not (home / "passwd.cdb.tmp").is_symlink()


def test_hardlinked_table_is_refused_never_read_nor_written_through(tmp_path):
    """A hard link may be another tenant's table: plan refuses it by name, and apply, if it
    appears after the plan, neither reads it nor writes through it."""
    home = empty_root(tmp_path / "root")
    apply_howto(tmp_path / "root")
    from dataclasses import replace

    from vmreconcile.desired.spec import UserSpec

    spec = howto_spec()
    spec = replace(spec, domains=(replace(spec.domains[0], users=spec.domains[0].users + (UserSpec("bob"),)),))
    host = Host(tmp_path / "root")
    plan, _ = plan_on_host(host, spec, now=NOW)
    target = victim(tmp_path)
    original = (home / "passwd.cdb").read_bytes()
    target.write_bytes(original)
    (home / "passwd.cdb").unlink()
    os.link(target, home / "passwd.cdb")
    refused, _ = plan_on_host(host, spec, now=NOW)
    assert refused.changes == ()
    assert refused.errors == (
        f"domain mydomain.org: {home}/passwd.cdb: has 2 hard links; refusing to read it (it may be another table)",
    )
    result = execute(plan, host)
    assert result.errors == [
        f"mydomain.org: table: {home}/passwd.cdb: has 2 hard links; refusing to read it (it may be another file's content)"
    ]
    assert target.read_bytes() == original and (home / "passwd.cdb").stat().st_nlink == 2


def test_symlinked_local_config_dir_is_refused(tmp_path):
    home = empty_root(tmp_path / "root")
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    (home / ".vmailmgr").symlink_to(outside)
    from dataclasses import replace

    spec = howto_spec()
    spec = replace(spec, domains=(replace(spec.domains[0], options={"default-expiry": "100"}),))
    host = Host(tmp_path / "root")
    refused, _ = plan_on_host(host, spec, now=NOW)
    assert refused.errors == (f"domain mydomain.org: {home}/.vmailmgr: is a symbolic link; refusing to follow it",)
    (home / ".vmailmgr").unlink()
    plan, _ = plan_on_host(host, spec, now=NOW)
    (home / ".vmailmgr").symlink_to(outside)  # planted between plan and apply
    result = execute(plan, host)
    assert result.errors and "symbolic link" in result.errors[0]
    assert list(outside.iterdir()) == []


@requires_root
def test_as_root_with_a_real_system_user_ownership_and_modes_match_tree_txt(tmp_path, make_system_user):
    user = make_system_user(home=tmp_path / "root" / "home" / "vmrt-home")
    root = tmp_path / "root"
    empty_root(root, base_user=user.name, uid=user.uid, gid=user.gid)
    (root / "etc/passwd").write_text(f"{user.name}:x:{user.uid}:{user.gid}::/home/vmrt-home:/bin/sh\n")
    from dataclasses import replace

    spec = howto_spec()
    spec = replace(spec, domains=(replace(spec.domains[0], base_user=user.name),))
    host = Host(root)
    plan, _ = plan_on_host(host, spec, now=NOW)
    assert execute(plan, host).errors == []
    listing = tree(user.home)
    assert {uid for _, uid, _ in listing} == {user.uid}
    modes = {path: mode for mode, _, path in listing}
    expected = {
        "./passwd.cdb": "-rw-------",
        "./.qmail-default": "-rw-r--r--",
        "./users": "drwxr-xr-x",
        "./users/postmaster": "drwx------",
        "./users/postmaster/cur": "drwxr-xr-x",
        "./users/me": "drwx------",
        "./users/me/tmp": "drwxr-xr-x",
        "./users/+": "drwx------",
    }
    assert {k: modes[k] for k in expected} == expected


@requires_root
def test_as_root_a_base_user_symlink_to_a_root_file_is_never_written(tmp_path, make_system_user):
    user = make_system_user(home=tmp_path / "root" / "home" / "vmrt-home")
    root = tmp_path / "root"
    empty_root(root, base_user=user.name, uid=user.uid, gid=user.gid)
    (root / "etc/passwd").write_text(f"{user.name}:x:{user.uid}:{user.gid}::/home/vmrt-home:/bin/sh\n")
    shadowish = victim(tmp_path)
    shadowish.chmod(0o600)
    link = user.home / ".qmail-default"
    link.symlink_to(shadowish)
    os.lchown(link, user.uid, user.gid)
    from dataclasses import replace

    spec = howto_spec()
    spec = replace(spec, domains=(replace(spec.domains[0], base_user=user.name),))
    host = Host(root)
    plan, _ = plan_on_host(host, spec, now=NOW)
    assert execute(plan, host).errors == []
    assert shadowish.read_text() == "do not touch\n"
    assert shadowish.stat().st_uid == 0 and stat.S_IMODE(shadowish.stat().st_mode) == 0o600
