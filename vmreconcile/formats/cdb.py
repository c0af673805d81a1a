"""Constant databases exactly as VMailMgr writes them ([compat: cdb]).

djb's cdb layout, with one twist: VMailMgr's hash reads key bytes through a signed ``char``,
so a byte >= 0x80 is XORed in as ``0xFFFFFF00 | b``. For 7-bit keys the two hashes agree; a
table with a non-ASCII key must use the signed hash or VMailMgr's own tools cannot find it.

Pure functions over bytes. `build_cdb` returns the whole file; the caller writes it
atomically. When every key is ASCII and the ``cdbx`` C extension is installed, it is used for
speed (its standard hash is then identical); the pure writer is the reference otherwise.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from mmap import mmap
    from typing import Any

HEADER_SIZE = 2048
#: The most hash-table slots one lookup probes. cdbmake (and VMailMgr) make every hash table
#: twice as long as the records it indexes, so a key's probe run is short (1.5-2.5 slots on
#: average; the longest run of full slots in a 1,000,000-user table is 45, measured). A
#: crafted table can make every lookup walk millions of full slots (~0.25 us each); past this
#: many the table is refused as malformed instead (`CdbError`): a lookup costs at most ~1 ms
#: whatever the table. Thousands of names that share one hash (VMailMgr would accept them)
#: are refused the same way, for that domain only.
MAX_PROBES = 4096
#: The most bytes one record may hold, key and data together. VMailMgr's records are a few hundred
#: bytes; the largest legitimate one is an alias with a long forward list, and 64 KiB holds about
#: 1,500 forwards of 40 characters (a longer list belongs in a mailing-list manager). A record is
#: checked against this from its two length fields, before a byte of it is copied or decoded: a
#: tenant's 48 MB record would otherwise cost every lookup of that name ~60 MiB and a second of
#: CPU. A larger record is refused as malformed (`CdbError`, for that domain only), and validate
#: refuses a YAML entry whose record would be larger (`formats.vpwentry.record_size`), so apply
#: never writes one.
MAX_RECORD_SIZE = 64 * 1024
_PAIR = struct.Struct("<II")
_HEADER = struct.Struct("<512I")


class CdbError(ValueError):
    """The bytes are not a well-formed cdb (truncated, pointers out of range, ...)."""


def vmailmgr_hash(key: bytes) -> int:
    """VMailMgr's cdb hash: djb's, with bytes >= 0x80 sign-extended (x86 ``char``)."""
    h = 5381
    for b in key:
        if b >= 0x80:
            b |= 0xFFFFFF00
        h = ((h * 33) & 0xFFFFFFFF) ^ b
    return h


def djb_hash(key: bytes) -> int:
    """Standard djb cdb hash (unsigned bytes); equal to `vmailmgr_hash` for ASCII keys."""
    h = 5381
    for b in key:
        h = ((h * 33) & 0xFFFFFFFF) ^ b
    return h


def build_cdb(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Return the bytes of a cdb holding ``items`` in order, byte-identical to VMailMgr's.

    Duplicate keys are written as given (cdb allows them); callers that want unique keys
    make them unique first. A record over `MAX_RECORD_SIZE` is refused (`CdbError`): every
    reader would refuse the table. (`build_cdb_pure` writes anything: tests craft tables with it.)
    """
    items = list(items)
    for key, data in items:
        if len(key) + len(data) > MAX_RECORD_SIZE:
            raise CdbError(
                f"the record of {key[:64].decode('utf-8', 'replace')!r} would hold {len(key) + len(data)} bytes,"
                f" more than the {MAX_RECORD_SIZE} one record may have"
            )
    if len(items) > 64 and _load_cdbx() is not None and all(k.isascii() for k, _ in items):
        return _build_with_cdbx(items)
    return build_cdb_pure(items)


def build_cdb_pure(items: list[tuple[bytes, bytes]]) -> bytes:
    """The reference writer: cdbmake's algorithm with `vmailmgr_hash`."""
    parts: list[bytes] = []
    buckets: list[list[tuple[int, int]]] = [[] for _ in range(256)]
    pos = HEADER_SIZE
    pack = _PAIR.pack
    for key, data in items:
        h = vmailmgr_hash(key)
        buckets[h & 255].append((h, pos))
        parts.append(pack(len(key), len(data)))
        parts.append(key)
        parts.append(data)
        pos += 8 + len(key) + len(data)
    if pos > 0xFFFFFFFF:
        raise CdbError("table larger than 4 GiB")
    header: list[int] = []
    tables: list[bytes] = []
    for entries in buckets:
        slots = 2 * len(entries)
        header.append(pos)
        header.append(slots)
        if not slots:
            continue
        table = [(0, 0)] * slots
        for h, rpos in entries:
            i = (h >> 8) % slots
            while table[i][1]:
                i = (i + 1) % slots
            table[i] = (h, rpos)
        tables.append(b"".join(pack(h, p) for h, p in table))
        pos += 8 * slots
    return _HEADER.pack(*header) + b"".join(parts) + b"".join(tables)


def _build_with_cdbx(items: list[tuple[bytes, bytes]]) -> bytes:
    import tempfile

    with tempfile.TemporaryFile() as fp:
        maker = _load_cdbx().CDB.make(fp)
        for key, data in items:
            maker.add(key, data)
        maker.commit()
        fp.seek(0)
        return fp.read()


_cdbx_module: object | None = None
_cdbx_tried = False


def _load_cdbx() -> Any:
    """The optional ``cdbx`` C extension, imported on first use (the runtime copy never has it)."""
    global _cdbx_module, _cdbx_tried
    if not _cdbx_tried:
        _cdbx_tried = True
        try:
            import cdbx

            _cdbx_module = cdbx
        except ImportError:  # pragma: no cover - depends on the environment
            _cdbx_module = None
    return _cdbx_module


class CdbReader:
    """Read a cdb held in memory (bytes or an ``mmap``), checking every pointer it follows.

    A lookup tries VMailMgr's signed hash first, then the standard one (so tables written by
    a standard cdbmake also work: a reader tries the signed variant first).
    """

    def __init__(self, data: bytes | memoryview | mmap) -> None:
        if len(data) < HEADER_SIZE:
            raise CdbError(f"truncated cdb: {len(data)} bytes, the header alone is 2048")
        self._data = data
        self._header = _HEADER.unpack_from(data, 0)
        self._end_of_records = self._header[0]
        if not HEADER_SIZE <= self._end_of_records <= len(data):
            raise CdbError("corrupt cdb: record area ends outside the file")
        for bucket in range(256):
            tpos, slots = self._header[2 * bucket], self._header[2 * bucket + 1]
            if tpos < HEADER_SIZE or tpos + 8 * slots > len(data):
                raise CdbError(f"corrupt cdb: hash table {bucket} lies outside the file")

    @property
    def data(self) -> bytes | memoryview | mmap:
        """The table's bytes as read (the plan cache keys decodings by their digest)."""
        return self._data

    def check_layout(self) -> None:
        """Raise `CdbError` unless the file has exactly the layout cdbmake and VMailMgr write.

        The records run from the header to the first hash table; the 256 tables follow back to
        back in bucket order and end where the file ends. A file with valid-looking pointers
        that is not laid out so (a sparse file, a crafted one) is refused before any record is
        read: a reader that walks it anyway may walk a gigabyte of zeros. The number of
        records must then be half the number of slots (`record_count`).
        """
        expected = self._end_of_records
        for bucket in range(256):
            tpos, slots = self._header[2 * bucket], self._header[2 * bucket + 1]
            if tpos != expected:
                raise CdbError(f"corrupt cdb: hash table {bucket} is at {tpos}, not at {expected}")
            expected += 8 * slots
        if expected != len(self._data):
            raise CdbError(f"corrupt cdb: the hash tables end at {expected}, the file at {len(self._data)}")

    @property
    def record_count(self) -> int:
        """How many records the hash tables say there are (cdbmake makes two slots per record)."""
        return int(sum(self._header[1::2])) // 2

    def get(self, key: bytes) -> bytes | None:
        """The first record stored under ``key``, or None."""
        for value in self._lookup(key, vmailmgr_hash(key)):
            return value
        if not key.isascii():
            for value in self._lookup(key, djb_hash(key)):
                return value
        return None

    def _lookup(self, key: bytes, h: int) -> Iterator[bytes]:
        """The values stored under ``key`` (hash ``h``), probing at most `MAX_PROBES` slots.

        A lookup stops at the first empty slot, as cdb's own does; a table in which it meets
        none within its probe budget is refused (`CdbError`), never walked to the end.
        """
        data = self._data
        tpos, slots = self._header[2 * (h & 255)], self._header[2 * (h & 255) + 1]
        if not slots:
            return
        start = (h >> 8) % slots
        for n in range(min(slots, MAX_PROBES)):
            slot = (start + n) % slots
            sh, rpos = _PAIR.unpack_from(data, tpos + 8 * slot)
            if rpos == 0:
                return
            if sh != h:
                continue
            klen, dlen = self._record_lengths(rpos)
            if klen == len(key) and data[rpos + 8 : rpos + 8 + klen] == key:
                yield bytes(data[rpos + 8 + klen : rpos + 8 + klen + dlen])
        bucket = h & 255
        if slots <= MAX_PROBES:
            raise CdbError(
                f"corrupt cdb: every slot of hash table {bucket} is full (cdbmake leaves half of them empty)"
            )
        raise CdbError(
            f"corrupt cdb: a lookup probed {MAX_PROBES} slots of hash table {bucket} without reaching an empty one"
            " (a crafted table, or thousands of names with one hash)"
        )

    def _record_lengths(self, rpos: int) -> tuple[int, int]:
        """The key and data lengths of the record at ``rpos``, checked before anything is copied:
        inside the record area, and at most `MAX_RECORD_SIZE` bytes together."""
        if rpos < HEADER_SIZE or rpos + 8 > self._end_of_records:
            raise CdbError(f"corrupt cdb: record pointer {rpos} out of range")
        klen, dlen = _PAIR.unpack_from(self._data, rpos)
        if klen + dlen > MAX_RECORD_SIZE:
            raise CdbError(
                f"corrupt cdb: the record at {rpos} holds {klen + dlen} bytes, more than the {MAX_RECORD_SIZE}"
                " one record may have"
            )
        if rpos + 8 + klen + dlen > self._end_of_records:
            raise CdbError(f"corrupt cdb: record at {rpos} runs past the record area")
        return klen, dlen

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every record in file order (VMailMgr's listing order)."""
        data = self._data
        pos = HEADER_SIZE
        while pos < self._end_of_records:
            klen, dlen = self._record_lengths(pos)
            key = bytes(data[pos + 8 : pos + 8 + klen])
            yield key, bytes(data[pos + 8 + klen : pos + 8 + klen + dlen])
            pos += 8 + klen + dlen
