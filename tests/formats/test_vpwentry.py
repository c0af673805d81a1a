"""Virtual user records: every fixture record decodes as VMailMgr's own dumpvuser shows it."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import STEPS, step_dir
from vmreconcile.formats.cdb import CdbError, CdbReader, build_cdb
from vmreconcile.formats.vpwentry import RecordError, decode_record, encode_record, name_problem, user_key
from vmreconcile.model import USER_FIELD_TABLE, VirtualUser


def parse_dumpvuser(text: str) -> dict[str, object]:
    """dumpvuser's output [compat: admin-tools] as field values of our model."""
    fields: dict[str, object] = {"forwards": []}
    for line in text.splitlines():
        label, _, value = line.partition(": ")
        if label == "Forward":
            fields["forwards"].append(value)
        else:
            fields[label] = value
    num = {"N/A": None}
    return {
        "password": fields["Encrypted-Password"],
        "directory": fields["Directory"],
        "forwards": tuple(fields["forwards"]),
        "hard_quota": num.get(fields["Hard-Quota"], fields["Hard-Quota"]),
        "soft_quota": num.get(fields["Soft-Quota"], fields["Soft-Quota"]),
        "message_size_limit": num.get(fields["Message-Size-Limit"], fields["Message-Size-Limit"]),
        "message_count_limit": num.get(fields["Message-Count-Limit"], fields["Message-Count-Limit"]),
        "created": fields["Creation-Time"],
        "expires": num.get(fields["Expiry-Time"], fields["Expiry-Time"]),
        "has_mailbox": fields["Has-Mailbox"] == "true",
        "mailbox_enabled": fields["Mailbox-Enabled"] == "true",
    }


def as_dump(user: VirtualUser) -> dict[str, object]:
    def n(v):
        return None if v is None else str(v)

    return {
        "password": user.password,
        "directory": user.directory,
        "forwards": user.forwards,
        "hard_quota": n(user.hard_quota),
        "soft_quota": n(user.soft_quota),
        "message_size_limit": n(user.message_size_limit),
        "message_count_limit": n(user.message_count_limit),
        "created": str(user.created),
        "expires": n(user.expires),
        "has_mailbox": user.has_mailbox,
        "mailbox_enabled": user.mailbox_enabled,
    }


def unescape_record(text: str) -> bytes:
    """passwd.records.txt escapes: \\0, \\\\, \\xNN."""
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "\\":
            nxt = text[i + 1]
            if nxt == "0":
                out.append(0)
                i += 2
            elif nxt == "\\":
                out.append(0x5C)
                i += 2
            elif nxt == "x":
                out.append(int(text[i + 2 : i + 4], 16))
                i += 4
            else:
                raise AssertionError(f"unknown escape {text[i : i + 2]!r}")
        else:
            out += text[i].encode()
            i += 1
    return bytes(out)


@pytest.mark.parametrize("step", STEPS)
def test_every_fixture_record_matches_dumpvuser_and_reencodes_identically(step):
    data = (step_dir(step) / "passwd.cdb").read_bytes()
    items = list(CdbReader(data).items())
    records = [line.split("\t", 1) for line in (step_dir(step) / "passwd.records.txt").read_text().splitlines()]
    assert [(k.encode(), unescape_record(v)) for k, v in records] == items
    users = {}
    for key, value in items:
        user = decode_record(key, value)
        assert encode_record(user) == value
        users[user.name] = user
    dumps = sorted((step_dir(step) / "dumpvuser").glob("*.txt"))
    assert dumps, "every step has dumpvuser output"
    for dump in dumps:
        name = dump.stem
        assert as_dump(users[user_key(name).decode()]) == parse_dumpvuser(dump.read_text()), name
    assert sorted(users) == sorted(d.stem.lower() for d in dumps)


EXAMPLE_A = (
    b"\x02\x0a\x01\x08\x01\x00$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1\x00./users/bob\x00\x00\x00"
    b"-\x00-\x00-\x00-\x001000000000\x00-\x00"
)
EXAMPLE_C = (
    b"\x02\x0a\x01\x08\x00\x00$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1\x00./users/alice\x00x@example.org\x00"
    b"bob\x00\x00Alice Smith\x001000000\x00800000\x0050000\x00100\x001000000000\x002000000000\x00"
)


def test_section_1_9_examples_encode_byte_for_byte():
    bob = VirtualUser("bob", "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1", "./users/bob", created=1000000000)
    assert encode_record(bob) == EXAMPLE_A and len(EXAMPLE_A) == 76
    alias = VirtualUser("myself", "*", "users/myself", forwards=("bob",), created=1000000000, has_mailbox=False)
    assert len(encode_record(alias)) == 48
    alice = VirtualUser(
        "alice",
        "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1",
        "./users/alice",
        forwards=("x@example.org", "bob"),
        personal="Alice Smith",
        hard_quota=1000000,
        soft_quota=800000,
        message_size_limit=50000,
        message_count_limit=100,
        created=1000000000,
        expires=2000000000,
        has_mailbox=True,
        mailbox_enabled=False,
    )
    assert encode_record(alice) == EXAMPLE_C and len(EXAMPLE_C) == 133


def test_old_and_v1_records_decode_as_section_1_9_e_says():
    old = decode_record(b"x", b":*:&a@b.c,d")
    assert (old.has_mailbox, old.directory, old.forwards, old.created) == (False, "", ("a@b.c", "d"), 0)
    v1 = decode_record(b"v1", b"\x01pw\x00./users/v1\x00f1\x00\x00Pers\x001\x002\x003\x004\x005\x00-\x00")
    assert (v1.hard_quota, v1.soft_quota, v1.message_size_limit, v1.message_count_limit) == (1, 2, 3, 4)
    assert (v1.created, v1.expires, v1.has_mailbox, v1.mailbox_enabled, v1.forwards) == (5, None, True, True, ("f1",))
    mailbox = decode_record(b"m", b":pw:./users/m")
    assert mailbox.has_mailbox and mailbox.directory == "./users/m" and mailbox.forwards == ()


def test_strtou_rules_for_number_fields():
    def with_quota(q: bytes) -> bytes:
        return b"\x02\x00*\x00d\x00\x00\x00" + q + b"\x00-\x00-\x00-\x000\x00-\x00"

    assert decode_record(b"k", with_quota(b"-99")).hard_quota is None
    assert decode_record(b"k", with_quota(b" 12")).hard_quota == 12
    assert decode_record(b"k", with_quota(b"")).hard_quota == 0
    assert decode_record(b"k", with_quota(b"4294967296")).hard_quota == 0
    with pytest.raises(RecordError, match="not a number"):
        decode_record(b"k", with_quota(b"12x"))


def test_empty_flag_list_means_both_flags_true_and_empty_directory_means_no_mailbox():
    user = decode_record(b"k", b"\x02\x00*\x00\x00\x00\x00-\x00-\x00-\x00-\x000\x00-\x00")
    assert user.mailbox_enabled and not user.has_mailbox


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty record"),
        (b"\x03\x0a\x01\x08\x01\x00*\x00", "unknown record format version 0x03"),
        (b"\x02\x0b\x01\x00*\x00d\x00\x00\x00-\x00-\x00-\x00-\x000\x00-\x00", "unknown flag number 11"),
        (EXAMPLE_A[:-1], "does not end in NUL"),
        (EXAMPLE_A[:40] + b"\x00", "truncated record"),
        (EXAMPLE_A + b"x\x00", "1 unexpected fields after the expiry"),
        (b"\x02\x0a", "truncated record"),
    ],
)
def test_bad_records_raise_a_clear_error_naming_the_key(data, message):
    with pytest.raises(RecordError, match=message) as info:
        decode_record(b"bob", data)
    assert "'bob'" in str(info.value)


def test_keys_are_ascii_lowercased_only():
    assert user_key("Henry.Ford") == b"henry.ford"
    assert user_key("JOS\u00c9") == "jos\u00c9".encode()


@pytest.mark.parametrize("name", ["", "a/b", "a:b", "a b", "a\tb", "a\nb", "a\rb"])
def test_invalid_names_are_explained(name):
    assert name_problem(name)


@pytest.mark.parametrize("name", ["me", "+", "a.b", "x-y", "a@b", "jos\u00e9", "\udcff"])
def test_valid_names(name):
    assert name_problem(name) is None


text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=30)
limit = st.one_of(st.none(), st.integers(min_value=0, max_value=0xFFFFFFFE))
users = st.builds(
    VirtualUser,
    name=st.text(
        st.characters(blacklist_characters="/:\n\r\t \0", blacklist_categories=("Cs", "Lu")), min_size=1, max_size=20
    ),
    password=text,
    directory=text,
    forwards=st.lists(text.filter(bool), max_size=4).map(tuple),
    personal=text,
    hard_quota=limit,
    soft_quota=limit,
    message_size_limit=limit,
    message_count_limit=limit,
    created=st.integers(min_value=0, max_value=0xFFFFFFFE),
    expires=limit,
    has_mailbox=st.booleans(),
    mailbox_enabled=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(users, max_size=15))
def test_records_and_tables_round_trip(user_list):
    items = [(user_key(u.name), encode_record(u)) for u in user_list]
    reader = CdbReader(build_cdb(items))
    decoded = [decode_record(k, v) for k, v in reader.items()]
    expected = [
        u.with_changes(name=user_key(u.name).decode(), has_mailbox=u.has_mailbox and bool(u.directory))
        for u in user_list
    ]
    assert decoded == expected


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_decode_or_raise_record_error(data):
    with contextlib.suppress(RecordError):
        decode_record(b"k", data)


# A table is at least its 2048-byte header, drawn as one fixed-size block: older Hypothesis
# (Debian 12's 6.67) draws a variable-length binary byte by byte, about 1 s per example here.
@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=2048, max_size=2048), st.binary(max_size=252))
def test_arbitrary_tables_read_or_raise_cdb_error(header, tail):
    data = header + tail
    try:
        reader = CdbReader(data)
        list(reader.items())
        reader.get(b"me")
    except CdbError:
        pass


#: A value unlike the default for each unit of the field table (a new unit needs one here;
#: a flag takes the opposite of its default).
_NON_DEFAULT = {
    "hash": "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1",
    "text": "./users/every",
    "addresses": ("a@example.org", "b"),
    "size": 123456,
    "count": 77,
    "time": 1_000_000_000,
    "expiry": 2_000_000_000,
}


@pytest.mark.parametrize("field", [f for f in USER_FIELD_TABLE if f.name != "name"], ids=lambda f: f.name)
def test_every_field_of_the_table_survives_the_record(field):
    """The codec carries each field of the table on its own: a new field without a place in the
    record fails here."""
    value = (not field.default) if field.unit == "flag" else _NON_DEFAULT[field.unit]
    fields = {"directory": "./users/every", field.name: value}
    user = VirtualUser("every", **fields)
    assert getattr(user, field.name) != field.default
    assert decode_record(user_key(user.name), encode_record(user)) == user


def test_the_codec_reads_numbers_in_the_order_of_the_table():
    numbers = sorted((f for f in USER_FIELD_TABLE if f.record.startswith("number")), key=lambda f: f.record)
    numbers.sort(key=lambda f: int(f.record.split()[1]))
    record = VirtualUser("n", directory="./users/n", **{f.name: 10 + i for i, f in enumerate(numbers)})
    decoded = decode_record(b"n", encode_record(record))
    assert [getattr(decoded, f.name) for f in numbers] == list(range(10, 10 + len(numbers)))
    raw = encode_record(record).split(b"\0")
    assert raw[-1 - len(numbers) : -1] == [str(10 + i).encode() for i in range(len(numbers))]
