"""The one bound on what a password check may cost (formats.hashcost), read from the hash alone."""

from __future__ import annotations

import pytest

from vmreconcile.formats import hashcost
from vmreconcile.formats.hashcost import cost_problem


@pytest.mark.parametrize(
    ("allowed", "refused", "why"),
    [
        ("$6$rounds=5000000$s$h", "$6$rounds=5000001$s$h", "sha-crypt rounds=5000001 is more than 5000000"),
        ("$5$rounds=5000000$s$h", "$5$rounds=999999999$s$h", "sha-crypt rounds=999999999 is more than 5000000"),
        ("$2b$14$" + "a" * 53, "$2b$15$" + "a" * 53, "bcrypt cost 15 is more than 14"),
        ("$2a$14$" + "a" * 53, "$2y$31$" + "a" * 53, "bcrypt cost 31 is more than 14"),
        ("$y$jDT$salt$h", "$y$jET$salt$h", "yescrypt N=2^17 x r=32 x p=1 is more than 2097152 blocks"),
        ("$gy$jDT$salt$h", "$gy$jFT$salt$h", "yescrypt N=2^18 x r=32 x p=1 is more than 2097152 blocks"),
        ("$y$jEA$salt$h", "$y$j9k.$salt$h", "yescrypt parameters 'j9k.' are not the ones vmreconcile can bound"),
        ("$7$EU..../....salt$h", "$7$E/...../...salt$h", "scrypt N=2^16 x r=1 x p=64"),
        ("$sha1$1000000$s$h", "$sha1$1000001$s$h", "sha1crypt rounds 1000001 is more than 1000000"),
        ("$md5,rounds=500000$s$h", "$md5,rounds=500001$s$h", "Sun MD5 rounds=500001 is more than 500000"),
        ("$md5$rounds=500000$s$h", "$md5$rounds=500001$s$h", "Sun MD5 rounds=500001 is more than 500000"),
        ("$md5$rounds=500000$", "$md5$rounds=4000000000$", "Sun MD5 rounds=4000000000 is more than 500000"),
        ("_...9salt", "_zzzzsalt", "BSDi DES count 16777215 is more than 8388608"),
    ],
)
def test_each_cost_parameter_is_bounded_at_its_limit(allowed, refused, why):
    assert cost_problem(allowed) is None
    assert cost_problem(refused).startswith(why)


@pytest.mark.parametrize(
    "stored",
    ["", "*", "!", "$1$abcdefgh$x", "$0$plain", "3" + "a" * 32, "abcdefghijklm", "$2b$99$x", "$y$zzz$s$h", "$6$s$h"],
)
def test_hashes_without_a_cost_or_that_crypt_refuses_are_not_judged(stored):
    """No parameter (fixed cost), or one libxcrypt refuses before computing anything."""
    assert cost_problem(stored) is None


@pytest.mark.parametrize(
    "stored",
    [
        "$sha1$+4000000000$s$h",  # strtoul takes a sign...
        "$sha1$-4294000000$s$h",  # ...and wraps a negative one to a huge count
        "$sha1$0000000000004000000000$s$h",  # leading zeros: never cut the number short
        "$sha1$04000$s$h",
        "$sha1$ 4000$s$h",
        "$sha1$12345678901$s$h",  # 11 digits
        "$sha1$$s$h",
        "$sha1$4000x$s$h",
        "$6$rounds=+5000$s$h",
        "$5$rounds=0005000$s$h",
        "$6$rounds=-1$s$h",
        "$md5,rounds=+4000000000$s$h",
        "$md5$rounds=0000000000004000000000$s$h",
        "$md5$rounds=$s$h",
        "$md5$rounds=1000x$s$h",
        "$md5$salt,rounds=4000000000$h",  # rounds=anywhere else: libxcrypt's strstr would find it
        "$md5,xx,rounds=4000000000$s$h",
        "$2b$1x$" + "a" * 53,
        "$2b$+9$" + "a" * 53,
        "$2b$123$" + "a" * 53,
        "$7$E..../....",  # too short to hold N, r and p
        "$7$E!.../....salt$h",
        "_..!.salt",
        "_..",
    ],
)
def test_a_cost_that_is_not_exactly_readable_counts_as_over_the_limit(stored):
    """A count is canonical decimal (or the scheme's exact base 64) or its cost is unknown: refused."""
    assert "cost is unknown" in cost_problem(stored) or "is more than" in cost_problem(stored)


def test_a_wrapped_or_padded_count_is_read_in_full_never_cut_short():
    assert cost_problem("$sha1$4000000000$s$h") == "sha1crypt rounds 4000000000 is more than 1000000"
    assert "'0000000000004000" in cost_problem("$sha1$0000000000004000000000$s$h")
    assert "'-4294000000'" in cost_problem("$sha1$-4294000000$s$h")


def test_the_limits_are_each_about_half_of_the_check_cpu_limit():
    """The figures the docstring states (measured on this project's reference machine, ~1 s each)."""
    assert hashcost.MAX_CHECK_CPU_SECONDS == 2
    assert (hashcost.MAX_SHA_CRYPT_ROUNDS, hashcost.MAX_BCRYPT_COST, hashcost.MAX_SCRYPT_BLOCKS) == (
        5_000_000,
        14,
        1 << 21,
    )
