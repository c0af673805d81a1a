"""Sizes, counts and times: what admins write, what VMailMgr stores, and export's spelling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmreconcile.desired import units
from vmreconcile.model import UINT_MAX


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (0, 0),
        (1234, 1234),
        ("1234", 1234),
        ("10 KB", 10_000),
        ("10KB", 10_000),
        ("10 kb", 10_000),
        ("10 MB", 10_000_000),
        ("2 GB", 2_000_000_000),
        ("1 KiB", 1024),
        ("100 MiB", 104_857_600),
        ("3 GiB", 3 * 1024**3),
        ("1.5 KiB", 1536),
        ("1_000 B", 1000),
        ("unlimited", None),
        (" Unlimited ", None),
        (UINT_MAX - 1, UINT_MAX - 1),
    ],
)
def test_sizes_parse_to_bytes(text, value):
    assert units.parse_size(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10 XB", "cannot read '10 XB' (size): use an integer, KB/MB/GB (1000), KiB/MiB/GiB (1024) or unlimited"),
        ("lots", "cannot read 'lots' (size)"),
        (-1, "size -1 is negative"),
        (UINT_MAX, "does not fit VMailMgr's 32-bit field"),
        ("4 GiB", "does not fit"),
        ("1.0001 KB", "is not a whole number of bytes"),
        (True, "must be a number of bytes"),
        (None, "must be a number of bytes"),
    ],
)
def test_bad_sizes_say_what_is_accepted(text, message):
    with pytest.raises(units.UnitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        units.parse_size(text)


def test_counts_take_no_units():
    assert units.parse_count(500) == 500
    assert units.parse_count("unlimited") is None
    with pytest.raises(units.UnitError):
        units.parse_count("5 KB")


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        (0, 0),
        (1795546316, 1795546316),
        ("2027-06-30", 1814313600),
        ("2100-01-01", 4102444800),
        ("2026-11-24T18:51:56Z", 1795546316),
        ("2026-11-24T18:51:56", 1795546316),
        ("2026-11-24 18:51:56", 1795546316),
        ("2026-11-24T19:51:56+01:00", 1795546316),
        ("2026-11-24T13:51:56-0500", 1795546316),
        ("2026-11-24T18:51Z", 1795546260),
        ("2026-11-24T18:51:56.75Z", 1795546316),
    ],
)
def test_times_are_read_in_utc(text, epoch):
    assert units.parse_time(text) == epoch


@pytest.mark.parametrize("text", ["yesterday", "2027-13-45", "2027-02-30", "1969-12-31", "2107-01-01", True, 1.5])
def test_bad_times_are_refused(text):
    with pytest.raises(units.UnitError):
        units.parse_time(text)


def test_expiry_never_is_none():
    assert units.parse_expiry("never") is None
    assert units.parse_expiry(None) is None
    assert units.parse_expiry("2027-06-30") == 1814313600


def test_unsigned_options_keep_vmailmgrs_own_spellings():
    assert units.parse_unsigned_option("100 MiB", "x") == "104857600"
    assert units.parse_unsigned_option(7, "x") == "7"
    assert units.parse_unsigned_option("unlimited", "x") == "-"
    assert units.parse_unsigned_option("-1", "x") == "-1"
    assert units.parse_unsigned_option("-", "x") == "-"


@given(st.one_of(st.none(), st.integers(0, UINT_MAX - 1)))
def test_format_size_reads_back_as_the_same_value(value):
    assert units.parse_size(units.format_size(value)) == value


@given(st.integers(0, UINT_MAX - 1))
def test_format_time_reads_back_as_the_same_value(value):
    assert units.parse_time(units.format_time(value)) == value


def test_format_uses_the_largest_exact_unit():
    assert units.format_size(104_857_600) == "100 MiB"
    assert units.format_size(10_000_000) == "10 MB"
    assert units.format_size(1536) == 1536
    assert units.format_size(0) == 0
    assert units.format_time(1814313600) == "2027-06-30"
    assert units.format_time(1795546316) == "2026-11-24T18:51:56Z"
