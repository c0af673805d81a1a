"""tables.open_table: small tables read into memory, big ones mapped, the same answers either way,
and what a one-lookup process has to load for it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from vmreconcile import tables
from vmreconcile.formats.cdb import CdbError, build_cdb
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.model import VirtualUser
from vmreconcile.tables import READ_LIMIT, TableError, iter_users, lookup, open_table


def write_table(path, count: int) -> list[str]:
    names = [f"user{n}" for n in range(count)]
    items = [
        (user_key(name), encode_record(VirtualUser(name, password="*", directory=f"./users/{name}", created=n)))
        for n, name in enumerate(names)
    ]
    path.write_bytes(build_cdb(items))
    return names


@pytest.mark.parametrize("count", [3, 5000], ids=["small: read", "big: mapped"])
def test_small_and_big_tables_answer_alike(tmp_path, count):
    table = tmp_path / "passwd.cdb"
    names = write_table(table, count)
    assert (table.stat().st_size <= READ_LIMIT) == (count == 3)
    reader = open_table(table)
    assert isinstance(reader._data, bytes) == (count == 3)
    assert lookup(reader, names[-1]).directory == f"./users/{names[-1]}"
    assert lookup(reader, "USER1") is not None  # looked up by the lowercased key
    assert lookup(reader, "nobody") is None
    assert [u.name for u in iter_users(reader)] == names


def test_read_limit_zero_always_maps(tmp_path):
    import mmap

    write_table(tmp_path / "passwd.cdb", 3)
    assert isinstance(open_table(tmp_path / "passwd.cdb", read_limit=0)._data, mmap.mmap)


def test_missing_empty_symlinked_and_odd_tables(tmp_path):
    assert open_table(tmp_path / "missing.cdb") is None
    (tmp_path / "empty.cdb").write_bytes(b"")
    with pytest.raises(CdbError):
        open_table(tmp_path / "empty.cdb")
    write_table(tmp_path / "real.cdb", 2)
    (tmp_path / "link.cdb").symlink_to(tmp_path / "real.cdb")
    with pytest.raises(TableError, match="symbolic link"):
        open_table(tmp_path / "link.cdb")
    os.mkfifo(tmp_path / "fifo.cdb")
    with pytest.raises(TableError, match="not a regular file"):
        open_table(tmp_path / "fifo.cdb")
    (tmp_path / "short.cdb").write_bytes(b"\0" * 100)
    with pytest.raises(CdbError):
        open_table(tmp_path / "short.cdb")


def test_a_one_lookup_process_loads_neither_mmap_nor_fcntl_for_a_small_table(tmp_path):
    """What every login and delivery pays: no extension module it does not need."""
    small, big = tmp_path / "small.cdb", tmp_path / "big.cdb"
    write_table(small, 3)
    write_table(big, 5000)
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); from vmreconcile.tables import open_table, lookup; "
        "assert lookup(open_table(sys.argv[1]), 'user1') is not None; "
        "print(' '.join(m for m in ('mmap', 'fcntl') if m in sys.modules))"
    )
    loaded = [
        subprocess.run(
            ["/usr/bin/python3", "-I", "-S", "-c", code, str(path)], capture_output=True, text=True, check=True
        ).stdout.split()
        for path in (small, big)
    ]
    assert loaded == [[], ["mmap"]]


def test_clear_stale_temp_still_locks(tmp_path):
    """fcntl is imported where it is used: a temp file another process holds is not removed."""
    import fcntl

    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        holder = os.open(tmp_path / "passwd.cdb.tmp", os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(holder, fcntl.LOCK_EX)
        try:
            assert tables.clear_stale_temp(dir_fd, "passwd.cdb.tmp", 0.0, print) is False
            assert (tmp_path / "passwd.cdb.tmp").exists()
        finally:
            os.close(holder)
        assert tables.clear_stale_temp(dir_fd, "passwd.cdb.tmp", 0.0, lambda _: None) is True
        assert not (tmp_path / "passwd.cdb.tmp").exists()
    finally:
        os.close(dir_fd)
    assert sys.modules["vmreconcile.tables"] is tables
