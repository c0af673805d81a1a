"""The cdb layer must read and write exactly what VMailMgr reads and writes [compat: cdb]."""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import STEPS, never_empty_cdb, step_dir
from vmreconcile.formats import cdb
from vmreconcile.formats.cdb import CdbError, CdbReader, build_cdb, build_cdb_pure, djb_hash, vmailmgr_hash
from vmreconcile.formats.vpwentry import user_key


def test_signed_char_hash_matches_vmailmgr_golden_value():
    assert vmailmgr_hash(b"jos\xc3\xa9") == 0x0B002479
    assert djb_hash(b"jos\xc3\xa9") == 0x0B003879


def test_hashes_agree_for_ascii_keys():
    assert vmailmgr_hash(b"bob") == djb_hash(b"bob") == 0x0B8747AA


def test_empty_database_is_2048_bytes_of_2048_0_pairs():
    data = build_cdb([])
    assert data == struct.pack("<II", 2048, 0) * 256


def test_one_record_table_matches_the_worked_example_of_section_2():
    record = (
        b"\x02\x0a\x01\x08\x01\x00$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1\x00./users/bob\x00\x00\x00"
        b"-\x00-\x00-\x00-\x001000000000\x00-\x00"
    )
    assert len(record) == 76
    data = build_cdb_pure([(b"bob", record)])
    assert len(data) == 2151
    header = struct.unpack("<512I", data[:2048])
    assert header[2 * 169] == 2135 and header[2 * 169 + 1] == 0
    assert header[2 * 170] == 2135 and header[2 * 170 + 1] == 2
    assert header[2 * 171] == 2151 and header[2 * 171 + 1] == 0
    assert data[2048:2059] == bytes.fromhex("03000000 4c000000 626f62".replace(" ", ""))
    assert data[2135:] == bytes(8) + bytes.fromhex("aa47870b00080000")


@pytest.mark.parametrize("step", STEPS)
def test_fixture_tables_rebuild_byte_identical(step):
    data = (step_dir(step) / "passwd.cdb").read_bytes()
    items = list(CdbReader(data).items())
    assert build_cdb_pure(items) == data
    assert build_cdb(items) == data
    reader = CdbReader(data)
    for key, value in items:
        assert reader.get(key) == value


def test_non_ascii_key_uses_the_signed_hash_and_is_found_again():
    items = [(b"jos\xc3\xa9", b"one"), (b"ascii", b"two")]
    data = build_cdb(items)
    pos = 2048
    # the table slot for the key carries VMailMgr's hash, not djb's
    assert struct.pack("<I", 0x0B002479) in data[pos:]
    assert struct.pack("<I", 0x0B003879) not in data[pos:]
    assert CdbReader(data).get(b"jos\xc3\xa9") == b"one"


def test_reader_also_finds_non_ascii_keys_in_standard_cdb_tables():
    # a table made by a standard cdbmake (unsigned hash) still answers lookups
    original = cdb.vmailmgr_hash
    try:
        cdb.vmailmgr_hash = djb_hash  # build once with the standard hash
        data = build_cdb_pure([(b"\xffkey", b"v")])
    finally:
        cdb.vmailmgr_hash = original
    assert CdbReader(data).get(b"\xffkey") == b"v"


def test_cdbx_is_only_used_for_ascii_keys(monkeypatch):
    calls = []
    monkeypatch.setattr(cdb, "_build_with_cdbx", lambda items: calls.append(items) or build_cdb_pure(items))
    if cdb._load_cdbx() is None:
        pytest.skip("cdbx is not installed")
    many = [(b"k%d" % i, b"v") for i in range(100)]
    build_cdb(many)
    build_cdb(many + [(b"\xe9", b"1")])
    build_cdb(many[:10])  # small tables: the pure writer is faster than a temp file
    assert len(calls) == 1


keys = st.binary(min_size=0, max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(keys, st.binary(max_size=100)), max_size=60))
def test_any_table_round_trips(items):
    data = build_cdb(items)
    reader = CdbReader(data)
    assert list(reader.items()) == items
    first: dict[bytes, bytes] = {}
    for key, value in items:
        first.setdefault(key, value)
    for key, value in first.items():
        assert reader.get(key) == value


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(keys, st.binary(max_size=50)), min_size=1, max_size=20), st.data())
def test_every_truncation_of_a_table_is_a_clear_error(items, data):
    table = build_cdb(items)
    cut = data.draw(st.integers(min_value=0, max_value=len(table) - 1))
    with pytest.raises(CdbError):
        CdbReader(table[:cut])


def test_truncated_header_is_a_clear_error():
    with pytest.raises(CdbError, match="truncated cdb"):
        CdbReader(b"\0" * 100)


def test_pointer_outside_file_is_a_clear_error():
    data = bytearray(build_cdb([(b"a", b"b")]))
    data[0:4] = struct.pack("<I", 10**6)
    with pytest.raises(CdbError, match="corrupt"):
        CdbReader(bytes(data))


def test_cdbx_and_the_pure_writer_agree_on_large_ascii_tables():
    if cdb._load_cdbx() is None:
        pytest.skip("cdbx is not installed")
    items = [(b"user%d" % i, b"record %d" % i) for i in range(5000)]
    assert cdb._build_with_cdbx(items) == build_cdb_pure(items)


def test_a_table_with_every_slot_full_is_refused_as_malformed():
    table, name = never_empty_cdb(16)
    reader = CdbReader(table)
    reader.check_layout()  # the layout is cdbmake's: only the lookup can see it
    with pytest.raises(CdbError, match="every slot of hash table 7 is full"):
        reader.get(user_key(name))


def test_a_lookup_probes_at_most_max_probes_slots():
    """A crafted table of 2,000,000 full slots (16 MB): cdb's own lookup walks them all
    (~0.5 s per lookup here); ours gives up after MAX_PROBES."""
    table, name = never_empty_cdb(2_000_000)
    reader = CdbReader(table)
    reader.check_layout()
    started = time.perf_counter()
    with pytest.raises(CdbError, match=f"probed {cdb.MAX_PROBES} slots of hash table 7"):
        reader.get(user_key(name))
    assert time.perf_counter() - started < 0.1  # ~1 ms; walking 2M slots takes ~0.5 s
    # a long run that ends before the budget is still an ordinary miss
    table, name = never_empty_cdb(2 * cdb.MAX_PROBES, empty_from=cdb.MAX_PROBES - 1)
    assert CdbReader(table).get(user_key(name)) is None


def test_real_tables_never_come_near_the_probe_budget():
    """The budget refuses crafted tables only: 200,000 ordinary names all read back."""
    items = [(b"user%d@example.org" % i, b"%d" % i) for i in range(200_000)]
    reader = CdbReader(build_cdb(items))
    reader.check_layout()
    for key, value in items[::97]:
        assert reader.get(key) == value
    assert reader.get(b"nobody-here") is None


class _CountingBytes(bytes):
    """Bytes that remember the longest slice taken: what a reader copied out of the table."""

    longest = 0

    def __getitem__(self, index):  # type: ignore[override]
        part = super().__getitem__(index)
        if isinstance(index, slice):
            _CountingBytes.longest = max(_CountingBytes.longest, len(part))
        return part


def test_a_record_of_the_largest_size_reads_back_and_one_byte_more_is_refused():
    at_limit = b"x" * (cdb.MAX_RECORD_SIZE - 2)
    reader = CdbReader(build_cdb([(b"me", at_limit), (b"bob", b"ok")]))
    assert reader.get(b"me") == at_limit and list(reader.items())[0] == (b"me", at_limit)
    over = CdbReader(build_cdb_pure([(b"bob", b"ok"), (b"me", at_limit + b"x"), (b"eve", b"ok")]))
    with pytest.raises(CdbError, match=f"holds {cdb.MAX_RECORD_SIZE + 1} bytes, more than the 65536 one record"):
        over.get(b"me")
    assert over.get(b"bob") == b"ok" and over.get(b"eve") == b"ok"  # the other names are not affected
    with pytest.raises(CdbError, match="more than the 65536 one record may have"):
        list(over.items())


def test_a_huge_record_is_refused_from_its_lengths_before_a_byte_is_copied():
    """A tenant's 48 MB record (4,000,000 forwards, under vauthd's 64 MB cap): every lookup of it
    used to copy and decode ~60 MiB. Now the lengths alone refuse it, in microseconds."""
    table = _CountingBytes(build_cdb_pure([(b"me", b"\0" * (48 << 20)), (b"bob", b"ok")]))
    reader = CdbReader(table)
    reader.check_layout()
    _CountingBytes.longest = 0
    started = time.perf_counter()
    for _ in range(100):
        with pytest.raises(CdbError, match="more than the 65536 one record may have"):
            reader.get(b"me")
    assert time.perf_counter() - started < 0.1  # ~0.3 ms; copying 48 MB 100 times: seconds
    assert _CountingBytes.longest <= len(b"me")  # only the key was compared, nothing of the data copied
    assert reader.get(b"bob") == b"ok"


def test_the_writer_refuses_a_record_every_reader_would_refuse():
    assert CdbReader(build_cdb([(b"me", b"x" * (cdb.MAX_RECORD_SIZE - 2))])).get(b"me") is not None
    with pytest.raises(CdbError, match="the record of 'me' would hold 65537 bytes, more than the 65536"):
        build_cdb([(b"bob", b"ok"), (b"me", b"x" * (cdb.MAX_RECORD_SIZE - 1))])
