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


def test_the_limits_are_each_about_half_of_the_check_cpu_limit():
    """The figures the docstring states (measured on this project's reference machine, ~1 s each)."""
    assert hashcost.MAX_CHECK_CPU_SECONDS == 2
    assert (hashcost.MAX_SHA_CRYPT_ROUNDS, hashcost.MAX_BCRYPT_COST, hashcost.MAX_SCRYPT_BLOCKS) == (
        5_000_000,
        14,
        1 << 21,
    )
