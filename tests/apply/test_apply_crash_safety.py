"""SIGKILL at every checkpoint of an apply: tables stay old or new, the next apply converges alone."""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import build_step_root, own_home
from tests.plan.reconcile_helpers import spec_from_state
from vmreconcile import atomic
from vmreconcile.apply import crashpoint
from vmreconcile.apply.execute import execute
from vmreconcile.apply.lock import global_lock
from vmreconcile.desired.spec import PasswordSpec, UserSpec
from vmreconcile.host import Host
from vmreconcile.live import read_live_state
from vmreconcile.tables import iter_users, open_table
from vmreconcile.workflow import plan_on_host

NOW = 1_800_000_000


def target_spec(live):
    """A big edit of step 05: users added, one changed, one deleted, a domain alias added."""
    spec = spec_from_state(live)
    domain = spec.domains[0]
    users = tuple(
        u.with_changes(personal="changed") if u.name == "alice" else u for u in domain.users if u.name != "bob"
    )
    users += tuple(UserSpec(f"new{i}", password=PasswordSpec("hash", "$0$x")) for i in range(3))
    return replace(spec, domains=(replace(domain, users=users, domain_aliases=("alias.example",)),))


def snapshot(root: Path) -> dict[str, bytes]:
    control = root / "var/qmail/control"
    return {
        "table": (root / "home/vbase1/passwd.cdb").read_bytes(),
        **{name: (control / name).read_bytes() for name in ("virtualdomains", "rcpthosts")},
    }


def run_in_child(root: Path, spec, crash_at: int) -> int:
    """Fork; the child applies ``spec`` with VMRECONCILE_CRASH_AT=crash_at. Returns the wait status."""
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 1
        try:
            os.environ["VMRECONCILE_CRASH_AT"] = str(crash_at)
            crashpoint.reset()
            host = Host(root)
            with global_lock(host.lock_path, 5):
                plan, _ = plan_on_host(host, spec, now=NOW)
                code = 0 if not execute(plan, host).errors else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Step 05 as the old state, the big edit applied once (unkilled) as the new state."""
    base = tmp_path_factory.mktemp("crash-base")
    build_step_root("05-vchattr", base)
    spec = target_spec(read_live_state(Host(base)))
    done = tmp_path_factory.mktemp("crash-done")
    shutil.copytree(base, done, dirs_exist_ok=True, symlinks=True)
    own_home(done / "home/vbase1", 1008, 1008)  # copytree does not copy owners
    crashpoint.reset()
    plan, _ = plan_on_host(Host(done), spec, now=NOW)
    assert execute(plan, Host(done)).errors == []
    count = crashpoint.passed()
    assert count >= 10
    return base, spec, snapshot(base), read_live_state(Host(done)), count, snapshot(done)


def test_sigkill_at_every_checkpoint_leaves_old_or_new_and_the_next_apply_converges(prepared, tmp_path, monkeypatch):
    base, spec, old, new_state, count, new = prepared
    monkeypatch.setattr(atomic, "STALE_AFTER", 0.0)  # the killed writer's temp file is stale at once
    new_users = {u.name: u for u in new_state.domains[0].users}
    saw_new_table = saw_leftover_tmp = False
    for n in range(1, count + 1):
        root = tmp_path / f"run{n}"
        shutil.copytree(base, root, symlinks=True)
        own_home(root / "home/vbase1", 1008, 1008)
        status = run_in_child(root, spec, n)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, n
        home = root / "home/vbase1"
        saw_leftover_tmp |= (home / "passwd.cdb.tmp").exists()
        users = list(iter_users(open_table(home / "passwd.cdb")))  # decodable, whatever happened
        table = (home / "passwd.cdb").read_bytes()
        assert table in (old["table"], new["table"]), n
        if table == new["table"]:
            saw_new_table = True
            assert {u.name for u in users} == set(new_users), n
        for name in ("virtualdomains", "rcpthosts"):
            content = (root / "var/qmail/control" / name).read_bytes()
            assert content in (old[name], new[name]), (n, name)
        host = Host(root)
        plan, _ = plan_on_host(host, spec, now=NOW)
        assert execute(plan, host).errors == [], n
        assert plan_on_host(host, spec, now=NOW)[0].changes == (), n
        assert not (home / "passwd.cdb.tmp").exists()
        shutil.rmtree(root)
    assert saw_new_table and saw_leftover_tmp


def test_stale_vmailmgr_temp_file_is_removed_with_a_message(tmp_path):
    build_step_root("05-vchattr", tmp_path)
    home = tmp_path / "home/vbase1"
    tmp = home / "passwd.cdb.tmp"
    tmp.write_bytes(b"half a table")
    past = time.time() - 60
    os.utime(tmp, (past, past))
    host = Host(tmp_path)
    spec = target_spec(read_live_state(host))
    plan, _ = plan_on_host(host, spec, now=NOW)
    messages = []
    result = execute(plan, host, log=messages.append)
    assert result.errors == []
    assert any("removed stale" in m and "passwd.cdb.tmp" in m for m in messages)
    assert not tmp.exists()


def test_a_young_or_held_temp_file_is_waited_for_then_reported(tmp_path, monkeypatch):
    build_step_root("05-vchattr", tmp_path)
    home = tmp_path / "home/vbase1"
    (home / "passwd.cdb.tmp").write_bytes(b"vadduser is writing")
    monkeypatch.setattr(atomic, "TEMP_TIMEOUT", 0.3)
    host = Host(tmp_path)
    plan, _ = plan_on_host(host, target_spec(read_live_state(host)), now=NOW)
    before = (home / "passwd.cdb").read_bytes()
    result = execute(plan, host)
    assert result.errors and "another writer" in result.errors[0]
    assert (home / "passwd.cdb").read_bytes() == before
    assert (home / "passwd.cdb.tmp").read_bytes() == b"vadduser is writing"


def test_second_apply_waits_for_the_global_lock_and_times_out(tmp_path):
    from vmreconcile.apply.lock import LockTimeout

    host = Host(tmp_path)
    waits = []
    with global_lock(host.lock_path, 1):
        pid = os.fork()
        if pid == 0:
            try:
                with global_lock(host.lock_path, 0.2, on_wait=waits.append):
                    os._exit(0)
            except LockTimeout:
                os._exit(7 if waits else 8)
            os._exit(9)
        _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 7
    with global_lock(host.lock_path, 0.2):  # released when the holder is gone
        pass
