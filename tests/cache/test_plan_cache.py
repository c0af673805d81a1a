"""Plan's cache of decoded tables and maildir checks: a warm plan reads what a cold one reads.

Every test compares against the truth, a read of the host without any cache: after each kind
of change a tenant or an admin can make (a table rewritten in place with the same size and
modification time, a table renamed over, a maildir's ``cur/`` removed or swapped for a
symlink), the live state a warm cache gives is the live state of a cold read. Files settle
(`store.SETTLE_NS`) before they are kept; the tests set that to 0 so that they need not wait,
and one test checks the settling itself.
"""

from __future__ import annotations

import mmap
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import build_step_root
from vmreconcile.apply.execute import execute
from vmreconcile.cache import livestate, resolved
from vmreconcile.cache import store as store_module
from vmreconcile.cache.livestate import LiveCache
from vmreconcile.cache.resolved import ResolveMemo
from vmreconcile.cache.store import CacheStore
from vmreconcile.desired.export import export_yaml
from vmreconcile.formats.cdb import CdbReader, build_cdb
from vmreconcile.formats.vpwentry import decode_record, encode_record, user_key
from vmreconcile.host import Host
from vmreconcile.live import read_live_state
from vmreconcile.workflow import load_config, plan_on_host


@pytest.fixture
def no_settling(monkeypatch):
    monkeypatch.setattr(store_module, "SETTLE_NS", 0)
    monkeypatch.setattr(livestate, "SETTLE_NS", 0)


@pytest.fixture
def fleet(tmp_path, no_settling):
    """A host shaped like VMailMgr's own after ``vaddalias`` and the configuration that matches it."""
    root = tmp_path / "root"
    home = build_step_root("03-vaddalias", root)
    config = tmp_path / "mail.yaml"
    config.write_text(export_yaml(read_live_state(Host(root))))
    return root, home, config


def warm_plan(root: Path, config: Path, cache_dir: Path):
    """One `plan` as the command makes it with a cache: (plan, live state, the run's LiveCache)."""
    with CacheStore.open(str(cache_dir)) as store:
        assert store is not None
        cache = LiveCache(store)
        memo = ResolveMemo(store)
        plan, live = plan_on_host(Host(root), load_config(config, store), cache=cache, memo=memo)
    return plan, live, cache


def cold_live(root: Path):
    return read_live_state(Host(root))


def rewrite_users(table: Path, edit) -> None:
    """Write the table again with ``edit(user)`` applied to each entry (same inode)."""
    reader = CdbReader(table.read_bytes())
    users = [edit(decode_record(k, v)) for k, v in reader.items()]
    table.write_bytes(build_cdb((user_key(u.name), encode_record(u)) for u in users))


def postmaster_named(personal: str):
    return lambda u: u.with_changes(personal=personal) if u.name == "postmaster" else u


def desire_personal(root: Path, home: Path, config: Path, personal: str) -> None:
    """Give postmaster a personal name in the table and say it in the YAML (so that a live
    difference is a change in the plan)."""
    rewrite_users(home / "passwd.cdb", postmaster_named(personal))
    config.write_text(export_yaml(cold_live(root)))


def test_a_warm_plan_decodes_nothing_and_equals_a_cold_one(fleet, tmp_path):
    root, _home, config = fleet
    first, live_first, cache = warm_plan(root, config, tmp_path / "cache")
    assert cache.misses >= 1 and cache.hits == 0
    second, live_second, cache = warm_plan(root, config, tmp_path / "cache")
    assert cache.hits >= 1 and cache.misses == 0
    assert live_first == live_second == cold_live(root)
    assert first.changes == second.changes == ()


def test_same_size_same_mtime_same_inode_differs_only_by_ctime_and_is_seen(fleet, tmp_path):
    root, home, config = fleet
    table = home / "passwd.cdb"
    desire_personal(root, home, config, "Abcd")
    warm_plan(root, config, tmp_path / "cache")
    before = table.stat()
    rewrite_users(table, postmaster_named("Wxyz"))
    os.utime(table, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = table.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    plan, live, cache = warm_plan(root, config, tmp_path / "cache")
    assert live == cold_live(root)
    assert [u.personal for d in live.domains for u in d.users if u.name == "postmaster"] == ["Wxyz"]
    assert plan.changes, "the desired 'Abcd' differs from the live 'Wxyz'"


def test_a_table_renamed_over_with_the_old_times_is_seen(fleet, tmp_path):
    root, home, config = fleet
    table = home / "passwd.cdb"
    desire_personal(root, home, config, "Abcd")
    warm_plan(root, config, tmp_path / "cache")
    before = table.stat()
    fresh = home / "passwd.new"
    shutil.copyfile(table, fresh)
    rewrite_users(fresh, postmaster_named("Wxyz"))
    os.utime(fresh, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.rename(fresh, table)
    _plan, live, _cache = warm_plan(root, config, tmp_path / "cache")
    assert live == cold_live(root)
    assert [u.personal for d in live.domains for u in d.users if u.name == "postmaster"] == ["Wxyz"]


def maildir_of(live, name: str) -> bool:
    (domain,) = live.domains
    user = next(u for u in domain.users if u.name == name)
    return user.directory in domain.maildirs


@pytest.mark.parametrize("how", ["removed", "symlink", "file"])
def test_a_maildir_losing_cur_is_seen(fleet, tmp_path, how):
    root, home, config = fleet
    _plan, live, _cache = warm_plan(root, config, tmp_path / "cache")
    (domain,) = live.domains
    user = next(u for u in domain.users if u.directory and u.directory in domain.maildirs)
    cur = home / user.directory / "cur"
    cur.rmdir()
    if how == "symlink":
        cur.symlink_to(tmp_path)
    elif how == "file":
        cur.write_bytes(b"")
    _plan, live, _cache = warm_plan(root, config, tmp_path / "cache")
    assert live == cold_live(root)
    assert not maildir_of(live, user.name)


def test_a_maildir_made_again_is_seen(fleet, tmp_path):
    root, home, config = fleet
    _plan, live, _cache = warm_plan(root, config, tmp_path / "cache")
    (domain,) = live.domains
    user = next(u for u in domain.users if u.directory and u.directory in domain.maildirs)
    (home / user.directory / "new").rmdir()
    _plan, live, _cache = warm_plan(root, config, tmp_path / "cache")
    assert not maildir_of(live, user.name)
    (home / user.directory / "new").mkdir()
    _plan, live, _cache = warm_plan(root, config, tmp_path / "cache")
    assert maildir_of(live, user.name) and live == cold_live(root)


@pytest.mark.parametrize("how", ["symlink", "hard link"])
def test_a_warm_cache_does_not_spare_the_checks_of_a_cold_read(fleet, tmp_path, how):
    """A table that became a symlink or got a second link is refused exactly as without a cache."""
    root, home, config = fleet
    warm_plan(root, config, tmp_path / "cache")
    table = home / "passwd.cdb"
    if how == "symlink":
        os.rename(table, home / "real.cdb")
        table.symlink_to("real.cdb")
    else:
        os.link(table, home / "second-name")
    plan, _live, _cache = warm_plan(root, config, tmp_path / "cache")
    assert plan.errors, "the domain must be refused"
    assert "passwd.cdb" in str(plan.errors[0])


def test_a_forged_cache_entry_never_reaches_the_table_apply_writes(fleet, tmp_path):
    """The plan apply shows may come from the cache; its check under the lock reads the file.

    The cache is rewritten as its owner could (a valid file, checksum and all) so that it says
    the table holds another personal name: the plan shows a change, and apply, which compares
    the table's digest under the lock, refuses to write instead of trusting the cache."""
    root, home, config = fleet
    desire_personal(root, home, config, "Abcd")
    warm_plan(root, config, tmp_path / "cache")
    with CacheStore.open(str(tmp_path / "cache")) as store:
        store.remove(resolved.NAME)  # the memo would take the (forged) live domain as desired
        tables, maildirs = store.load(livestate.NAME)
        (path,) = tables
        key, rows = tables[path]
        name_at = livestate.USER_FIELDS.index("name")
        personal_at = livestate.USER_FIELDS.index("personal")
        forged = tuple(
            row[:personal_at] + ("forged",) + row[personal_at + 1 :] if row[name_at] == "postmaster" else row
            for row in rows
        )
        assert store.save(livestate.NAME, ({path: (key, forged)}, maildirs))
    plan, live, cache = warm_plan(root, config, tmp_path / "cache")
    assert cache.hits == 1 and plan.changes, "the forged entry was used for the plan"
    before = (home / "passwd.cdb").read_bytes()
    result = execute(plan, Host(root))
    assert any("changed since the plan was made" in e for e in result.errors), result.errors
    assert (home / "passwd.cdb").read_bytes() == before


def test_deleting_the_cache_at_any_time_is_safe(fleet, tmp_path):
    root, _home, config = fleet
    cache_dir = tmp_path / "cache"
    warm_plan(root, config, cache_dir)
    shutil.rmtree(cache_dir)
    plan, live, cache = warm_plan(root, config, cache_dir)
    assert cache.hits == 0 and live == cold_live(root) and plan.changes == ()
    assert sorted(os.listdir(cache_dir))  # filled again


def test_files_not_settled_are_not_kept(tmp_path, monkeypatch):
    """A table changed within the timestamps' granularity could change again unseen: not kept."""
    root = tmp_path / "root"
    build_step_root("03-vaddalias", root)
    config = tmp_path / "mail.yaml"
    config.write_text(export_yaml(read_live_state(Host(root))))
    _plan, _live, cache = warm_plan(root, config, tmp_path / "cache")  # the files are brand new
    _plan, _live, cache = warm_plan(root, config, tmp_path / "cache")
    assert cache.hits == 0, "a file younger than SETTLE_NS was kept"
    past = time.time_ns() - 2 * store_module.SETTLE_NS
    monkeypatch.setattr(time, "time_ns", lambda: past + 4 * store_module.SETTLE_NS)
    _plan, _live, cache = warm_plan(root, config, tmp_path / "cache")
    _plan, _live, cache = warm_plan(root, config, tmp_path / "cache")
    assert cache.hits == 1


@pytest.mark.parametrize(
    "edit",
    [
        lambda text: text.replace("    wildcard: true\n", "    wildcard: true\n    domain_aliases: [alias.example]\n"),
        lambda text: text.replace("    wildcard: true\n", "    wildcard: false\n"),
    ],
    ids=["alias added", "wildcard dropped"],
)
def test_a_routing_change_stays_in_every_warm_plan_until_applied(fleet, tmp_path, edit):
    """A change of aliases or wildcard is a change of control lines only (no domain's change):
    the memo of domains planned without a change must not take the live domain for it."""
    root, _home, config = fleet
    config.write_text(edit(config.read_text()))
    plans = [warm_plan(root, config, tmp_path / "cache")[0] for _ in range(3)]
    cold, _live = plan_on_host(Host(root), load_config(config))
    assert cold.changes and all(c.type == "control_line" for c in cold.changes)
    assert [p.changes for p in plans] == [cold.changes] * 3
    execute(plans[-1], Host(root))
    assert warm_plan(root, config, tmp_path / "cache")[0].changes == ()


def test_a_table_changed_through_a_shared_mapping_is_seen(fleet, tmp_path):
    """Writes through a shared mapping to a page that is already dirty leave the modification
    and change times alone (ext4; tmpfs never updates them for mapped writes): a tenant could
    change its table without changing its stat key. The cache keys decodings on the bytes."""
    root, home, config = fleet
    table = home / "passwd.cdb"
    data = table.read_bytes()
    at = data.index(b"$1$") + 3  # the first character of a salt: the record still decodes
    fd = os.open(table, os.O_RDWR)
    try:
        with mmap.mmap(fd, len(data)) as mapped:
            mapped[at : at + 1] = mapped[at : at + 1]  # the first write: the page is now dirty
            plan, _live, _cache = warm_plan(root, config, tmp_path / "cache")
            assert plan.changes == ()
            mapped[at : at + 1] = b"Z" if data[at : at + 1] != b"Z" else b"Y"
            plan, live, _cache = warm_plan(root, config, tmp_path / "cache")
    finally:
        os.close(fd)
    assert live == cold_live(root)
    assert any(c.type == "user" for c in plan.changes), "the changed hash must be planned back"


def test_a_cache_entry_of_the_wrong_shape_is_a_miss_not_an_error(fleet, tmp_path):
    """Only root writes the cache, but whatever it loads is checked before use."""
    root, _home, config = fleet
    warm_plan(root, config, tmp_path / "cache")
    with CacheStore.open(str(tmp_path / "cache")) as store:
        tables, maildirs = store.load(livestate.NAME)
        broken = {home: (entry[0], entry[1], ([1], {2: 3})) for home, entry in maildirs.items()}
        broken_tables = {path: (key, (("not", "a", "row"),)) for path, (key, _rows) in tables.items()}
        assert store.save(livestate.NAME, (broken_tables, broken))
    _plan, live, cache = warm_plan(root, config, tmp_path / "cache")
    assert cache.hits == 0 and live == cold_live(root)
