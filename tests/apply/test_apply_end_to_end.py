"""apply on throwaway roots: HOWTO from empty, idempotence, fixture tables byte for byte, mail kept."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import IS_ROOT, STEPS, build_step_root, step_dir
from tests.plan.reconcile_helpers import (
    empty_root,
    howto_spec,
    mtimes,
    spec_from_state,
    step_root_with_empty_home,
    tree,
)
from vmreconcile.apply.execute import execute
from vmreconcile.desired.spec import PasswordSpec, UserSpec
from vmreconcile.formats.cdb import build_cdb
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.host import Host
from vmreconcile.live import read_live_state
from vmreconcile.preflight import HostProblems
from vmreconcile.tables import iter_users, open_table
from vmreconcile.workflow import plan_on_host, read_changeable

NOW = 1_795_546_316


def apply_spec(host: Host, spec, **kw):
    plan, _ = plan_on_host(host, spec, now=NOW, **kw)
    result = execute(plan, host)
    assert result.errors == []
    return plan, result


def test_howto_from_empty_then_second_apply_changes_nothing(tmp_path):
    home = empty_root(tmp_path)
    host = Host(tmp_path)
    plan, result = apply_spec(host, howto_spec())
    assert plan.summary() == (16, 0, 0)
    listing = {path: mode for mode, _, path in tree(home)}
    assert listing["./passwd.cdb"] == "-rw-------"
    assert listing["./.qmail-default"] == "-rw-r--r--"
    assert listing["./users"] == "drwxr-xr-x"
    assert listing["./users/me"] == "drwx------" and listing["./users/me/new"] == "drwxr-xr-x"
    assert listing["./users/myself"] == "drwx------" and "./users/myself/new" not in listing
    assert (home / ".qmail-default").read_text() == "|/usr/local/bin/vdeliver\n"
    control = tmp_path / "var/qmail/control"
    assert (control / "virtualdomains").read_text() == "mydomain.org:myuser\n.mydomain.org:myuser\n"
    assert (control / "rcpthosts").read_text() == "localhost\nmydomain.org\n.mydomain.org\n"
    assert any("would run" in m or "no reload command" in m for m in result.messages)

    before = mtimes(tmp_path)
    again, _ = plan_on_host(host, howto_spec(), now=NOW + 100)
    assert again.changes == ()
    assert execute(again, host).written == []
    assert mtimes(tmp_path) == before


@pytest.mark.parametrize("step", STEPS)
def test_applying_an_exported_step_to_an_empty_home_reproduces_the_table_byte_for_byte(step, tmp_path):
    source = tmp_path / "source"
    build_step_root(step, source)
    spec = spec_from_state(read_live_state(Host(source)))
    target = tmp_path / "target"
    home = step_root_with_empty_home(step, target)
    apply_spec(Host(target), spec)
    assert (home / "passwd.cdb").read_bytes() == (step_dir(step) / "passwd.cdb").read_bytes()
    expected = [line.split(" ", 2) for line in (step_dir(step) / "tree.txt").read_text().splitlines()]
    ours = {path: mode for mode, _, path in tree(home)}
    for mode, _owner, path in expected:
        if "/cur/" in path or "/new/" in path or path.endswith("~"):
            continue  # delivered mail and vsetup's backup are not vmreconcile's to create
        assert ours.get(path) == mode, path
    assert plan_on_host(Host(target), spec, now=NOW)[0].changes == ()


def test_one_table_write_for_many_user_changes(tmp_path, monkeypatch):
    empty_root(tmp_path)
    host = Host(tmp_path)
    apply_spec(host, howto_spec())
    spec = howto_spec()
    domain = spec.domains[0]
    users = domain.users + tuple(UserSpec(f"user{i}", password=PasswordSpec("none")) for i in range(5))
    spec = replace(spec, domains=(replace(domain, users=users, prune=True),))
    from vmreconcile.apply import writer

    calls = []
    real = writer.write_file_at
    monkeypatch.setattr(writer, "write_file_at", lambda *a, **k: (calls.append(a[1]), real(*a, **k)))
    plan, _ = apply_spec(host, replace(spec, domains=(replace(spec.domains[0], catch_all=None),)))
    assert plan.summary() == (10, 0, 1)
    assert calls == ["passwd.cdb"]


def test_deleted_user_keeps_mail_and_purge_keeps_foreign_files(tmp_path):
    home = empty_root(tmp_path)
    host = Host(tmp_path)
    spec = howto_spec()
    domain = spec.domains[0]
    with_bob = replace(spec, domains=(replace(domain, users=domain.users + (UserSpec("bob"),), prune=True),))
    apply_spec(host, with_bob)
    (home / "users/bob/new/123.msg").write_text("mail")
    (home / "users/bob/autoresponse").mkdir()
    (home / "users/bob/autoresponse/message.txt").write_text("away")
    plan, _ = apply_spec(host, replace(spec, domains=(replace(domain, prune=True),)))
    assert any("./users/bob stays in ~myuser" in n for n in plan.notes)
    assert (home / "users/bob/new/123.msg").read_text() == "mail"
    assert read_live_state(host).domains[0].user("bob") is None

    apply_spec(host, with_bob)  # bob comes back: his mailbox is still there, his mail too
    assert (home / "users/bob/new/123.msg").exists()
    plan, result = apply_spec(host, replace(spec, domains=(replace(domain, prune=True),)), purge_mailboxes=True)
    assert [(c.action, c.type) for c in plan.changes] == [("delete", "user"), ("delete", "maildir")]
    assert not (home / "users/bob/new").exists()
    assert (home / "users/bob/autoresponse/message.txt").read_text() == "away"
    assert any("kept autoresponse" in m for m in result.messages)


def test_unmanaged_password_survives_a_change_made_outside(tmp_path):
    home = empty_root(tmp_path)
    host = Host(tmp_path)
    spec = howto_spec(PasswordSpec("unmanaged"))
    apply_spec(host, spec)
    assert read_changeable(host) == ("myuser/me",)
    assert stat.S_IMODE((tmp_path / "etc/vmailmgr/vmreconcile-passwd-changeable").stat().st_mode) == 0o644
    # what the authpipe's PASSWD does: rewrite the table with a new hash for me
    users = [
        u.with_changes(password="$0$changed") if u.name == "me" else u
        for u in iter_users(open_table(home / "passwd.cdb"))
    ]
    (home / "passwd.cdb").write_bytes(build_cdb((user_key(u.name), encode_record(u)) for u in users))
    plan, _ = plan_on_host(host, spec, now=NOW)
    assert plan.changes == ()
    assert read_live_state(host).domains[0].user("me").password == "$0$changed"


def test_morercpthosts_is_written_and_qmail_newmrh_is_mentioned(tmp_path):
    empty_root(tmp_path, rcpthosts="localhost\nmydomain.org\n")
    host = Host(tmp_path)
    spec = howto_spec()
    spec = replace(spec, domains=(replace(spec.domains[0], rcpthosts_file="morercpthosts"),))
    _, result = apply_spec(host, spec)
    control = tmp_path / "var/qmail/control"
    assert (control / "rcpthosts").read_text() == "localhost\n"
    assert (control / "morercpthosts").read_text() == "mydomain.org\n.mydomain.org\n"
    assert any("qmail-newmrh" in m and "not run under --root" in m for m in result.messages)


def test_existing_qmail_default_is_kept_as_a_backup_never_clobbered(tmp_path):
    home = empty_root(tmp_path)
    (home / ".qmail-default").write_text("|preline something\n")
    (home / ".qmail-default~").write_text("older\n")
    apply_spec(Host(tmp_path), howto_spec())
    assert (home / ".qmail-default~").read_text() == "older\n"
    assert (home / ".qmail-default~2").read_text() == "|preline something\n"
    assert (home / ".qmail-default").read_text() == "|/usr/local/bin/vdeliver\n"


@pytest.mark.skipif(not IS_ROOT, reason="chown to the base user needs root; CI runs as root")
def test_as_root_everything_is_owned_by_the_base_user_like_tree_txt(tmp_path):
    step = "11-after-deliveries"
    source = tmp_path / "source"
    build_step_root(step, source)
    spec = spec_from_state(read_live_state(Host(source)))
    home = step_root_with_empty_home(step, tmp_path / "target")
    os.chown(home, 1008, 1008)
    apply_spec(Host(tmp_path / "target"), spec)
    owners = {uid for _, uid, _ in tree(home)}
    assert owners == {1008}


def test_a_missing_home_is_an_error_not_created(tmp_path):
    home = empty_root(tmp_path)
    plan, _ = plan_on_host(Host(tmp_path), howto_spec(), now=NOW)  # made while the home was there
    home.rmdir()
    refused, _ = plan_on_host(Host(tmp_path), howto_spec(), now=NOW)
    assert refused.changes == () and refused.errors == (
        f"domain mydomain.org: {home}: the home of base user 'myuser' does not exist; create it (owned by myuser) first",
    )
    result = execute(plan, Host(tmp_path))  # the home vanished between plan and apply
    assert result.errors and "does not exist" in result.errors[0]
    assert not Path(home).exists()


def test_a_table_changed_between_plan_and_write_is_not_overwritten(tmp_path):
    home = empty_root(tmp_path)
    host = Host(tmp_path)
    spec = howto_spec(PasswordSpec("unmanaged"))
    apply_spec(host, spec)
    domain = spec.domains[0]
    plan, _ = plan_on_host(
        host, replace(spec, domains=(replace(domain, users=domain.users + (UserSpec("bob"),)),)), now=NOW
    )
    # a PASSWD through the authpipe lands after the plan read the table, before apply writes it
    users = [
        u.with_changes(password="$0$changed") if u.name == "me" else u
        for u in iter_users(open_table(home / "passwd.cdb"))
    ]
    changed = build_cdb((user_key(u.name), encode_record(u)) for u in users)
    (home / "passwd.cdb").write_bytes(changed)
    result = execute(plan, host)
    assert result.errors and "changed since the plan was made" in result.errors[0]
    assert (home / "passwd.cdb").read_bytes() == changed
    assert not (home / "passwd.cdb.tmp").exists()
    again, _ = plan_on_host(
        host, replace(spec, domains=(replace(domain, users=domain.users + (UserSpec("bob"),)),)), now=NOW
    )
    assert execute(again, host).errors == []
    assert read_live_state(host).domains[0].user("me").password == "$0$changed"


def test_a_missing_qmail_control_directory_is_an_error_not_created(tmp_path):
    empty_root(tmp_path)
    control = tmp_path / "var/qmail/control"
    for child in control.iterdir():
        child.unlink()
    control.rmdir()
    with pytest.raises(HostProblems, match="control: qmail's control directory does not exist"):
        plan_on_host(Host(tmp_path), howto_spec(), now=NOW)
    control.mkdir()
    plan, _ = plan_on_host(Host(tmp_path), howto_spec(), now=NOW)
    control.rmdir()  # gone between plan and apply
    result = execute(plan, Host(tmp_path))
    assert result.errors and "is qmail installed" in result.errors[0]
    assert not control.exists()


def test_options_are_written_global_and_per_domain_and_shape_new_users(tmp_path):
    home = empty_root(tmp_path)
    spec = howto_spec()
    spec = replace(
        spec,
        options={"default-expiry": "86400"},
        domains=(replace(spec.domains[0], options={"user-dir-bits": "4", "user-dir-slices": "1"}),),
    )
    plan, _ = apply_spec(Host(tmp_path), spec)
    assert [c.address for c in plan.changes[:3]] == [
        "option/default-expiry",
        "option/mydomain.org/user-dir-bits",
        "option/mydomain.org/user-dir-slices",
    ]
    assert (tmp_path / "etc/vmailmgr/default-expiry").read_text() == "86400\n"
    assert (home / ".vmailmgr/user-dir-bits").read_text() == "4\n"
    assert stat.S_IMODE((home / ".vmailmgr").stat().st_mode) == 0o755
    assert stat.S_IMODE((home / ".vmailmgr/user-dir-bits").stat().st_mode) == 0o644
    me = read_live_state(Host(tmp_path)).domains[0].user("me")
    assert me.directory.startswith("./users/") and me.directory.count("/") == 3
    assert me.expires == NOW + 86400
    assert (home / me.directory / "new").is_dir()
    assert plan_on_host(Host(tmp_path), spec, now=NOW)[0].changes == ()
