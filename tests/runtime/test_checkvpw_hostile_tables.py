"""checkvpw (the real launcher, as root) against a tenant's hostile table: a crafted hash
layout or a hash whose cost would take minutes is a quick, logged temporary failure."""

from __future__ import annotations

import os
import time

import pytest
from conftest import never_empty_cdb
from loginkit import create_world, destroy_world, run_fd3

from vmreconcile.formats.cdb import CdbReader, build_cdb, build_cdb_pure
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.model import VirtualUser

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="checkvpw must start as root (setuid); CI runs as root"),
]

PRINT_VUSER = ["/bin/sh", "-c", 'echo "vuser=$VUSER"', "Maildir"]
#: cdbmake's own lookup would run sha512 999,999,999 times: minutes of CPU, as root, per attempt.
COSTLY = "$6$rounds=999999999$abcdefgh$" + "a" * 86


@pytest.fixture(scope="module")
def world():
    made = create_world(programs=("checkvpw",))
    logs = made.root / "hooklogs"
    logs.mkdir()
    logs.chmod(0o777)  # the error hook runs as the base user by then
    made.log = logs / "log"
    yield made
    destroy_world(made)


@pytest.fixture
def table(world):
    """``install(bytes)`` replaces the base user's table; the original comes back afterwards."""
    path = world.home / "passwd.cdb"
    original = path.read_bytes()

    def install(data: bytes) -> None:
        temporary = path.with_name("passwd.cdb.tmp")
        temporary.write_bytes(data)
        os.chown(temporary, world.uid, world.gid)
        os.rename(temporary, path)

    yield install
    install(original)
    world.log.unlink(missing_ok=True)
    (world.config_dir / "checkvpw-error").unlink(missing_ok=True)


def with_user(world, name: str, password: str) -> bytes:
    items = list(CdbReader((world.home / "passwd.cdb").read_bytes()).items())
    record = VirtualUser(name=name, password=password, directory=f"./users/{name}")
    return build_cdb([*items, (user_key(name), encode_record(record))])


def login(world, name: str, password: str):
    return run_fd3(
        [world.launcher("checkvpw"), *PRINT_VUSER], f"{name}@mydomain.org\0{password}\0\0".encode(), timeout=60
    )


def error_hook(world) -> None:
    hook = world.config_dir / "checkvpw-error"
    hook.write_text(f'#!/bin/sh\necho "$CHECKVPW_ERROR" >> {world.log}\n')
    hook.chmod(0o755)


def test_a_hash_costing_minutes_is_refused_without_computing_it(world, table):
    table(with_user(world, "costly", COSTLY))
    error_hook(world)
    started = time.monotonic()
    result = login(world, "costly", "anything")
    assert time.monotonic() - started < 10  # ~50 ms; computing the hash: minutes
    assert (result.code, result.out) == (111, "")
    assert world.log.read_text() == "Password hash too costly to check\n"
    assert "sha-crypt rounds=999999999 is more than 5000000" in result.err and "costly" in result.err
    assert COSTLY not in result.err  # the reason, never the hash
    ok = login(world, "me", "secret")  # the other users of the table are not affected
    assert (ok.code, ok.out) == (0, "vuser=me\n")


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ("$sha1$+4000000000$abcdefgh$" + "a" * 28, "sha1crypt rounds '+4000000000' is not a plain decimal"),
        ("$sha1$-4294000000$abcdefgh$" + "a" * 28, "sha1crypt rounds '-4294000000' is not a plain decimal"),
        ("$sha1$0000000000004000000000$abcdefgh$" + "a" * 28, "sha1crypt rounds '0000000000004000"),
        ("$md5$rounds=4000000000$abcdefgh$$" + "a" * 22, "Sun MD5 rounds=4000000000 is more than 500000"),
    ],
)
def test_a_count_spelled_so_strtoul_reads_it_as_billions_is_refused_quickly(world, table, stored, why):
    """libxcrypt's sha1crypt reads ``+N``, ``-N`` (wrapped) and zero-padded counts; Sun MD5 takes
    ``$md5$rounds=``: each would run for hours as root, each is refused without computing it."""
    table(with_user(world, "spelled", stored))
    started = time.monotonic()
    result = login(world, "spelled", "anything")
    assert time.monotonic() - started < 10  # ~50 ms; computing the hash: hours
    assert (result.code, result.out) == (111, "")
    assert why in result.err and "spelled" in result.err


def test_a_table_with_no_empty_slot_is_a_quick_temporary_failure(world, table):
    table_bytes, name = never_empty_cdb(2_000_000)
    table(table_bytes)
    error_hook(world)
    started = time.monotonic()
    result = login(world, name, "anything")
    assert time.monotonic() - started < 10
    assert (result.code, result.out) == (111, "")
    assert world.log.read_text() == "Cannot read the virtual password table\n"


def test_a_record_over_the_size_limit_is_a_quick_temporary_failure_for_that_name_only(world, table):
    """``huge`` with 4,000,000 forwards (56 MB): decoding it cost every login ~1 s and ~650 MiB as
    root. Its lengths alone refuse it; the table's other users log in as before."""
    items = list(CdbReader((world.home / "passwd.cdb").read_bytes()).items())
    huge = VirtualUser(name="huge", password="$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1", directory="./users/huge")
    record = encode_record(huge.with_changes(forwards=("f@example.net",) * 4_000_000))
    table(build_cdb_pure([*items, (user_key("huge"), record)]))
    error_hook(world)
    started = time.monotonic()
    result = login(world, "huge", "anything")
    assert time.monotonic() - started < 10  # ~50 ms
    assert (result.code, result.out) == (111, "")
    assert world.log.read_text() == "Cannot read the virtual password table\n"
    ok = login(world, "me", "secret")
    assert (ok.code, ok.out) == (0, "vuser=me\n")


def test_a_table_whose_hash_tables_are_not_where_cdbmake_puts_them_is_refused(world, table):
    data = bytearray(with_user(world, "extra", "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"))
    table(bytes(data) + b"\0" * 4096)  # pointers still inside the file, but not cdbmake's layout
    result = login(world, "me", "secret")
    assert (result.code, result.out) == (111, "")
