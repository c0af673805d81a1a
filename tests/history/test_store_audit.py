"""The history store's directory rules and retention, and the audit line on a real socket."""

from __future__ import annotations

import os
import stat

import pytest

from tests.conftest import IS_ROOT
from tests.history.syslogkit import LINE, SyslogListener
from vmreconcile.history import audit
from vmreconcile.history.files import MISSING, FileRef, FileState
from vmreconcile.history.store import HistoryError, Store


def entry(store: Store, data: bytes = b"x") -> int:
    ref = FileRef(kind="control", path="/var/qmail/control/rcpthosts")
    pending = store.begin({"command": "apply"}, [(ref, FileState(type="file", data=data, mode=0o644))])
    pending.commit(outcome="complete", afters=[MISSING])
    return pending.id


def test_the_directory_is_made_root_only_and_a_loose_one_is_tightened(tmp_path):
    store = Store(tmp_path / "var" / "lib" / "vmreconcile" / "history")
    store.ensure()
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    store.directory.chmod(0o755)
    store.ensure()
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700


def test_a_symlinked_directory_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "history").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(HistoryError, match="is not a directory; refusing"):
        Store(tmp_path / "history").ensure()


@pytest.mark.skipif(not IS_ROOT, reason="chown to another uid needs root; CI runs as root")
def test_a_directory_of_another_user_is_refused(tmp_path):
    (tmp_path / "history").mkdir(mode=0o700)
    os.chown(tmp_path / "history", 1234, 1234)
    with pytest.raises(HistoryError, match="belongs to uid 1234"):
        Store(tmp_path / "history").ensure()


def test_retention_keeps_the_newest_and_ids_are_never_reused(tmp_path):
    store = Store(tmp_path / "history")
    store.ensure()
    ids = [entry(store) for _ in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    assert store.prune(2) == [1, 2, 3] and store.ids() == [4, 5]
    assert entry(store) == 6
    assert store.prune(0) == [4, 5] and store.ids() == [6]  # at least one always stays


def test_the_byte_budget_prunes_the_oldest_entries_but_never_the_newest(tmp_path):
    store = Store(tmp_path / "history", max_bytes=10_000)
    store.ensure()
    ids = [entry(store, b"x" * 3000) for _ in range(4)]
    sizes = [store.size(i) for i in ids]
    assert all(3000 < size < 4000 for size in sizes)  # the copy and entry.json
    assert store.prune(50) == [1, 2] and store.ids() == [3, 4]  # 4 entries > 10,000 bytes; 2 fit
    assert sum(store.size(i) for i in store.ids()) <= 10_000
    big = entry(store, b"y" * 9000)  # fits alone, but not with any older entry
    assert store.prune(50) == [3, 4] and store.ids() == [big]
    assert store.blob(big, "before-0") == b"y" * 9000


def test_an_entry_over_the_budget_alone_is_recorded_without_its_largest_copies(tmp_path):
    store = Store(tmp_path / "history", max_bytes=5000)
    store.ensure()
    refs = [FileRef(kind="table", path=f"/home/v{n}/passwd.cdb") for n in range(3)]
    befores = [
        FileState(type="file", data=bytes([65 + n]) * size, mode=0o600) for n, size in enumerate((4000, 3000, 900))
    ]
    pending = store.begin({"command": "apply"}, list(zip(refs, befores, strict=True)))
    doc = pending.commit(outcome="complete", afters=[MISSING] * 3)
    big, middle, small = (f["before"] for f in doc["files"])
    assert (big["type"], big["blob"], big["mode"]) == ("other", None, "0600")
    assert big["not_kept"] == "4000 bytes, over the history's budget of 5000 bytes"
    assert (middle["type"], middle["size"], "not_kept" in middle) == ("file", 3000, False)
    assert store.blob(pending.id, middle["blob"]) == b"B" * 3000 and store.blob(pending.id, small["blob"]) == b"C" * 900
    assert sorted(os.listdir(store.directory / "000001")) == ["before-1", "before-2", "entry.json"]
    assert store.load(pending.id)["files"] == doc["files"]


def test_leftovers_of_killed_runs(tmp_path):
    store = Store(tmp_path / "history")
    store.ensure()
    entry(store)
    os.mkdir(store.directory / ".prepare-000002")
    os.mkdir(store.directory / ".prune-000001")
    assert store.next_id() == 3  # an id a killed run took is not handed out again
    assert store.clear_unprepared() == [2]
    assert sorted(os.listdir(store.directory)) == ["000001"]


def test_a_foreign_entry_file_is_an_error_not_a_crash(tmp_path):
    store = Store(tmp_path / "history")
    store.ensure()
    (store.directory / "000001").mkdir()
    (store.directory / "000001" / "entry.json").write_text("{not json")
    with pytest.raises(HistoryError, match="not a history entry"):
        store.load(1)
    with pytest.raises(HistoryError, match="no history entry 7 \\(entries: 1\\)"):
        store.load(7)


def test_the_audit_line():
    base = {"id": 7, "user": "alice", "summary": {"add": 1, "change": 2, "destroy": 0}}
    apply = {**base, "command": "apply", "config_digest": "0123456789abcdef", "commit": "5f3e", "commit_dirty": True}
    assert audit.audit_line(apply) == "apply 7 by alice: +1 ~2 -0 (config 0123456789ab, commit 5f3e-dirty)"
    assert audit.audit_line({**apply, "commit": None}) == "apply 7 by alice: +1 ~2 -0 (config 0123456789ab)"
    rollback = {**base, "command": "rollback", "rollback_of": 3, "outcome": "interrupted"}
    assert audit.audit_line(rollback) == "rollback 7 by alice: +1 ~2 -0 (undoes 3) interrupted"


def test_the_audit_line_is_one_line_whatever_sudo_user_holds(tmp_path):
    forged = "alice: +0 ~0 -0 (config x)\n<85>vmreconcile[1]: apply 9 by root"
    entry = {"id": 7, "command": "apply\x1b[2J", "user": forged, "config_digest": "ab\r", "outcome": "failed\x85"}
    line = audit.audit_line(entry)
    assert line == (
        "apply\\x1b[2J 7 by alice: +0 ~0 -0 (config x)\\n<85>vmreconcile[1]: apply 9 by root: +0 ~0 -0 "
        "(config ab\\r) failed\\x85"
    )
    with SyslogListener(tmp_path / "dev" / "log") as listener:
        assert audit.send(tmp_path / "dev" / "log", line) is None
        (received,) = listener.lines()
    assert "\n" not in received and "\x1b" not in received and received.endswith(line)


def test_the_line_reaches_a_real_datagram_socket_even_through_a_long_path(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "dev" / "log"
    assert len(str(deep)) > 108
    with SyslogListener(deep) as listener:
        assert audit.send(deep, "apply 1 by root: +1 ~0 -0 (config abc)") is None
        (line,) = listener.lines()
    match = LINE.fullmatch(line)
    assert match and match["pid"] == str(os.getpid()) and match["details"] == "config abc"


def test_a_missing_socket_is_a_reason_not_an_exception(tmp_path):
    assert audit.send(tmp_path / "dev" / "log", "x") == f"{tmp_path}/dev/log: No such file or directory"
    (tmp_path / "file").write_text("")
    assert "Connection refused" in (audit.send(tmp_path / "file", "x") or "")


def test_every_kind_of_unit_apply_writes_is_known_to_the_history():
    """A new kind of file apply writes must be added to `plan_files`, or rollback could not restore it."""
    import typing

    from vmreconcile.apply.execute import Target
    from vmreconcile.history.files import FILE_UNITS, NOT_FILE_UNITS

    assert set(typing.get_args(Target)) == set(FILE_UNITS) | set(NOT_FILE_UNITS)


def _home_ref(tmp_path, content: bytes, links: int = 1):
    from vmreconcile.host import Host

    root = tmp_path / "root"
    home = root / "home" / "vbase"
    home.mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("vbase:x:1500:1500::/home/vbase:/bin/sh\n")
    (home / "passwd.cdb").write_bytes(content)
    for n in range(1, links):
        os.link(home / "passwd.cdb", tmp_path / f"elsewhere{n}")
    ref = FileRef(kind="table", path="/home/vbase/passwd.cdb", base_user="vbase", relative="passwd.cdb")
    return Host(root), ref


def test_the_history_copies_a_file_of_a_home_it_may_read(tmp_path):
    from vmreconcile.history.files import read_state

    host, ref = _home_ref(tmp_path, b"table bytes")
    assert read_state(host, ref).data == b"table bytes"


def test_a_hard_link_planted_after_the_plan_is_not_copied_into_the_history(tmp_path):
    from vmreconcile.history.files import read_state

    host, ref = _home_ref(tmp_path, b"another tenant's hashes", links=2)
    state = read_state(host, ref)
    assert (state.type, state.data) == ("other", None)


def test_a_file_grown_past_the_cap_after_the_plan_is_not_read_whole(tmp_path, monkeypatch):
    from vmreconcile.history import files

    monkeypatch.setattr(files, "MAX_KEPT", 1000)
    host, ref = _home_ref(tmp_path, b"x" * 1001)
    state = files.read_state(host, ref)
    assert (state.type, state.data) == ("other", None)
    assert files.read_state(*_home_ref(tmp_path / "small", b"x" * 1000)).data == b"x" * 1000
