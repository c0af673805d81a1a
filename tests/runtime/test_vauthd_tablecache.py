"""vauthd's table copies (runtime.dovecot.tablecache): which failures are kept for a table and
which are retried, and that the re-read throttle is bounded and survives eviction.

In-process, over a rooted fixture host and real files; the transient failure is a real EMFILE
(the process's descriptor limit lowered and filled), not a stub.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import build_step_root
from test_authpipe_support import STEP, world_dir

from vmreconcile.formats.cdb import build_cdb
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.host import BaseUser, Host
from vmreconcile.model import VirtualUser
from vmreconcile.runtime.courier.directory import Refused
from vmreconcile.runtime.dovecot import tablecache
from vmreconcile.runtime.dovecot.tablecache import CopiedTables


@pytest.fixture
def root() -> Iterator[Path]:
    with world_dir("vmr-tablecache-") as top:
        build_step_root(STEP, top / "root")
        yield top / "root"


def base_with_table(root: Path, name: str, users: tuple[str, ...] = ("me",)) -> BaseUser:
    """A base user whose home holds a table of ``users`` (written, then renamed into place)."""
    home = root / "home" / name
    home.mkdir(parents=True, exist_ok=True)
    items = [
        (user_key(u), encode_record(VirtualUser(name=u, password="$0$x", directory=f"./users/{u}"))) for u in users
    ]
    (home / "passwd.cdb.new").write_bytes(build_cdb(items))
    os.replace(home / "passwd.cdb.new", home / "passwd.cdb")
    return BaseUser(name=name, uid=1008, gid=1008, home=f"/home/{name}")


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Every path tablecache reads a copy of, in order."""
    seen: list[str] = []
    real = tablecache.read_table

    def counting(path: str, limit: int = tablecache.MAX_TABLE_BYTES) -> bytes | None:
        seen.append(path)
        return real(path, limit)

    monkeypatch.setattr(tablecache, "read_table", counting)
    return seen


def refused(tables: CopiedTables, base: BaseUser) -> str | None:
    try:
        tables.table(base)
    except Refused as exc:
        return exc.reason
    return None


def with_descriptors_exhausted(action):
    """``action()`` while this process cannot open one more file (a real EMFILE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        while True:
            try:
                held.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        return action()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_transient_os_error_is_retried_without_the_table_changing(root, reads):
    """EMFILE (or ENFILE, EIO, ENOMEM) says nothing about the table: it used to be kept with the
    table's identity and answered F until the table changed or SIGHUP."""
    tables = CopiedTables(Host(root))
    base = base_with_table(root, "vbase1")
    reason = with_descriptors_exhausted(lambda: refused(tables, base))
    assert reason is not None and "Too many open files" in reason
    assert len(reads) == 1
    deadline = time.monotonic() + tablecache.MAX_STALE_SECONDS + 0.5
    while refused(tables, base) is not None:  # retried once the throttle allows: ~microseconds here
        assert time.monotonic() < deadline, "a transient failure was kept for the unchanged table"
        time.sleep(0.002)
    assert tables.table(base).user("me").password == "$0$x"
    assert len(reads) == 2


def test_a_failure_the_table_causes_is_kept_until_the_table_changes(root, reads):
    tables = CopiedTables(Host(root))
    base = base_with_table(root, "vbase1")
    table = root / "home" / "vbase1" / "passwd.cdb"
    os.link(table, table.with_name("other.cdb"))  # two links: it may be another tenant's table
    assert "has 2 hard links" in refused(tables, base)
    time.sleep(tablecache.MAX_STALE_SECONDS + 0.1)
    assert "has 2 hard links" in refused(tables, base)
    assert len(reads) == 1  # the unchanged table is not read again
    table.with_name("other.cdb").unlink()  # its ctime changes: a new identity
    assert tables.table(base).user("me") is not None
    assert len(reads) == 2


def test_read_table_keeps_the_reason_of_the_tables_own_faults(root):
    """They are OSErrors too: the catch-all for read errors used to turn them into "<path>: None"."""
    directory = root / "a-directory.cdb"
    directory.mkdir()
    with pytest.raises(tablecache.TableError, match="not a regular file") as caught:
        tablecache.read_table(str(directory))
    assert not isinstance(caught.value, tablecache.ReadFailed)
    big = root / "big.cdb"
    big.write_bytes(b"x" * 100)
    with pytest.raises(tablecache.TableError, match="100 bytes is more than vauthd reads"):
        tablecache.read_table(str(big), limit=10)


def test_the_reread_throttle_outlives_an_eviction(root, reads):
    """One table fits: reading B evicts A. Asking for A again right away used to re-read it at
    once, whatever the throttle said (a tenant alternating two big tables re-read them without
    pause). Now A gets a temporary failure until its throttle allows, then is read again."""
    tables = CopiedTables(Host(root), max_tables=1)
    tables.reread_factor, tables.max_stale = 10**9, 0.3  # every read is throttled for 0.3 s
    a, b = base_with_table(root, "vbase1"), base_with_table(root, "vbase2")
    assert tables.table(a) is not None and tables.table(b) is not None
    assert len(reads) == 2
    assert "read again too soon" in refused(tables, a)
    assert len(reads) == 2
    time.sleep(0.35)
    assert tables.table(a).user("me") is not None
    assert len(reads) == 3


def test_the_throttle_state_is_bounded_by_the_tables_kept(root):
    """A tenant naming ever new password files must not grow vauthd's memory."""
    tables = CopiedTables(Host(root), max_tables=4)
    base = base_with_table(root, "vbase1")
    names = iter(range(10**6))
    tables.table_file = lambda _base: str(root / "home" / "vbase1" / f"t{next(names)}.cdb")  # type: ignore[method-assign]
    for _ in range(1000):
        assert tables.table(base) is None  # no such table
    assert len(tables._next_read) <= tables.max_next_reads == 8
    assert len(tables._copies) <= 4
