"""Stored hashes are judged by libxcrypt itself, grouped by shape, in a prober with CPU and memory limits."""

from __future__ import annotations

import ctypes
import os

import pytest

from vmreconcile.desired import hashcheck
from vmreconcile.desired.hashcheck import unusable_hashes
from vmreconcile.formats.hashing import SCHEMES, HashingError, _libcrypt, crypt, hash_password, verify_password

Y = "$y$j9T$.xuLG97L.5mm1Cb.iaR77ZiN4TFuoV7JnkTG4VcKU7D$dbiJWvXm8aJ3ExDuTVg61rZEyILfD8WLC/enZxR3KZ0"


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch):
    """Each test asks libxcrypt itself, not the answers an earlier test left in this process."""
    monkeypatch.setattr(hashcheck, "_usable_shapes", set())
    monkeypatch.setattr(hashcheck, "_unusable", {})


@pytest.fixture
def probes(monkeypatch):
    """Every (group, member) a prober was asked about, in order: the work done."""
    asked: list[tuple[int, int]] = []
    real = hashcheck._run_prober

    def counting(groups, position, budget):
        records, fate, used = real(groups, position, budget)
        asked.extend((group, member) for group, member, _ in records)
        return records, fate, used

    monkeypatch.setattr(hashcheck, "_run_prober", counting)
    return asked


def setting(prefix: bytes, count: int = 0) -> str:
    """A fresh setting (method, cost, random salt) from libxcrypt's own crypt_gensalt."""
    out = ctypes.create_string_buffer(256)
    random = os.urandom(32)
    made = _libcrypt().crypt_gensalt_rn(prefix, count, random, len(random), out, len(out))
    assert made
    return made.decode()


def children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_hashes_libxcrypt_makes_are_usable(scheme):
    stored = hash_password("a secret", scheme)
    assert unusable_hashes([stored]) == ({}, None)
    assert verify_password("a secret", stored)


def test_des_bsdi_nt_and_scrypt_hashes_made_by_libxcrypt_are_usable():
    made = [crypt(b"pw", setting) for setting in (b"ab", b"_J9..salt", b"$3$", setting(b"$7$").encode())]
    assert all(made)
    assert unusable_hashes([m.decode() for m in made if m]) == ({}, None)


@pytest.mark.parametrize(
    "stored, why",
    [
        ("$1$", "with these settings its hashes are 26 characters long, this one is 3"),
        ("$5$", "with these settings its hashes are 47 characters long, this one is 3"),
        (Y + " ", "(an unknown method, bad settings, or settings that need more than 1 GiB of memory)"),
        (Y[:-1], "with these settings its hashes are 94 characters long, this one is 93"),
        ("$2b$99$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234", "(an unknown method, bad settings"),
        ("$9$abcdefgh$IvHnD.uhYhhpxAiK9IT/C/", "(an unknown method, bad settings"),
        ("$y$zzz$.xuLG97L.5mm1Cb.iaR77Z$dbiJWvXm8aJ3ExDuTVg61rZEyILfD8WLC/enZxR3KZ0", "(an unknown method"),
        ("ab", "with these settings its hashes are 13 characters long, this one is 2"),
    ],
)
def test_hashes_libxcrypt_cannot_use_are_named_with_the_reason(stored, why):
    problems, warning = unusable_hashes([stored])
    assert warning is None
    assert problems[stored].startswith("libxcrypt cannot check a password against this hash")
    assert why in problems[stored]
    assert problems[stored].endswith("no login would ever succeed")


def test_a_bcrypt_salt_libxcrypt_rewrites_is_unusable_settings_read_differently():
    good = hash_password("pw", "bcrypt")
    salt_end = 7 + 22
    odd = good[: salt_end - 1] + "B" + good[salt_end:]  # 'B' sets low bits bcrypt's 22nd character drops
    problems, _ = unusable_hashes([odd])
    assert problems[odd].endswith("it reads the settings (method, cost, salt) differently: no login would ever succeed")


def test_one_probe_vouches_for_every_hash_of_its_shape(probes):
    checksum = Y.rsplit("$", 1)[1]
    stored = [setting(b"$y$") + "$" + checksum for _ in range(2000)]
    assert len(set(stored)) == 2000
    assert unusable_hashes(stored) == ({}, None)
    assert probes == [(0, 0)]
    assert unusable_hashes(stored) == ({}, None)  # the shape is remembered: no prober at all
    assert probes == [(0, 0)]


def test_a_bad_first_member_does_not_condemn_its_group(probes):
    checksum = Y.rsplit("$", 1)[1]
    good = [setting(b"$y$") + "$" + checksum for _ in range(50)]
    prefix = good[0][:-45]  # the setting without its salt's last character
    undecodable = [prefix + ch for ch in hashcheck.CRYPT_ALPHABET if not crypt(b"x", (prefix + ch).encode())]
    assert undecodable  # a salt whose last character has bits yescrypt's decoder refuses
    bad = undecodable[0] + "$" + checksum
    problems, _ = unusable_hashes([bad, *good])
    assert list(problems) == [bad]
    assert probes == [(0, 0), (0, 1)]  # the bad one, then the first good one; the rest by shape


def test_a_hash_too_costly_to_check_is_stopped_by_the_per_probe_cpu_timer(monkeypatch):
    monkeypatch.setattr(hashcheck, "cost_problem", lambda stored: None)  # the timer backs up the rules
    stored = "$6$rounds=999999999$abcdefgh$" + "a" * 86
    before = children_cpu()
    problems, _ = unusable_hashes([stored, Y])
    used = children_cpu() - before
    assert problems == {
        stored: "checking a password against this hash takes more than 2 s of CPU (or too much memory): "
        "every login would pay that; use cheaper settings"
    }
    assert used < hashcheck.PROBE_CPU_SECONDS + 1  # minutes without the timer


def test_the_total_cpu_budget_leaves_nothing_passed_unchecked(monkeypatch):
    monkeypatch.setattr(hashcheck, "PROBE_CPU_SECONDS", 30)
    monkeypatch.setattr(hashcheck, "PROBE_TOTAL_CPU_SECONDS", 1)
    monkeypatch.setattr(hashcheck, "cost_problem", lambda stored: None)
    costly = "$6$rounds=999999999$abcdefgh$" + "a" * 86
    before = children_cpu()
    problems, _ = unusable_hashes([costly, Y])
    assert children_cpu() - before < 3
    unchecked = "not checked: asking libxcrypt about this configuration's hashes took more than 1 s of CPU in all"
    assert problems == {costly: unchecked, Y: unchecked}


def test_a_setting_that_wants_gigabytes_is_refused_by_the_memory_limit(monkeypatch):
    monkeypatch.setattr(hashcheck, "cost_problem", lambda stored: None)  # the limit backs up the rules
    wasteful = "$y$jHT$abcdefghijklmnopqrstuv$" + Y.rsplit("$", 1)[1]  # yescrypt N=2^20 x r=32: 4 GiB
    before = children_cpu()
    problems, _ = unusable_hashes([wasteful])
    assert "settings that need more than 1 GiB of memory" in problems[wasteful]
    assert children_cpu() - before < 1


def test_without_libxcrypt_nothing_is_judged_and_a_warning_says_so(monkeypatch):
    def missing(plain, setting):
        raise HashingError("cannot load libcrypt.so.1: not found")

    monkeypatch.setattr(hashcheck, "crypt", missing)
    assert unusable_hashes(["$1$"]) == ({}, "password hashes were not checked: cannot load libcrypt.so.1: not found")


def test_the_shape_masks_salt_and_checksum_but_keeps_the_parameters():
    shape = hashcheck._shape
    assert shape("$6$rounds=5000$abcdefgh$xyz") != shape("$6$rounds=6000$abcdefgh$xyz")
    assert shape("$6$rounds=5000$abcdefgh$xyz") == shape("$6$rounds=5000$hgfedcba$zyx")
    assert shape("$2b$10$" + "a" * 53) != shape("$2b$12$" + "a" * 53)
    assert shape("$1$ab:cdefg$x") != shape("$1$abacdefg$x")  # a character crypt never writes stays itself
    assert shape("$5$") != shape("$1$")


def test_when_no_prober_can_start_nothing_passes(monkeypatch):
    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(hashcheck.os, "fork", no_fork)
    problems, _ = unusable_hashes([Y])
    assert problems == {
        Y: "not checked: the process that asks libxcrypt could not be started (Resource temporarily unavailable)"
    }


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ("$6$rounds=999999999$abcdefgh$" + "a" * 86, "sha-crypt rounds=999999999 is more than 5000000"),
        ("$5$rounds=5000001$abcdefgh$" + "a" * 43, "sha-crypt rounds=5000001 is more than 5000000"),
        ("$2b$15$abcdefghijklmnopqrstuu" + "a" * 31, "bcrypt cost 15 is more than 14"),
        ("$y$jHT$abcdefghijklmnopqrstuv$" + "a" * 43, "yescrypt N=2^20 x r=32 x p=1 is more than 2097152 blocks"),
        ("$7$FU..../....abcdefgh$" + "a" * 43, "scrypt N=2^17 x r=32 x p=1 is more than 2097152 blocks"),
        (
            "$sha1$+4000000000$abcdefgh$" + "a" * 28,
            "sha1crypt rounds '+4000000000' is not a plain decimal number (1 to 10 digits): its cost is unknown",
        ),
        (
            "$sha1$0000000000004000000000$abcdefgh$" + "a" * 28,
            "sha1crypt rounds '0000000000004000000000' is not a plain decimal number (1 to 10 digits): "
            "its cost is unknown",
        ),
        ("$md5$rounds=4000000000$abcdefgh$$" + "a" * 22, "Sun MD5 rounds=4000000000 is more than 500000"),
    ],
)
def test_cost_parameters_over_the_runtime_limit_are_refused_without_a_probe(stored, why, probes):
    """The one limit (formats.hashcost) the login programs apply too: validate refuses what they
    would refuse, by reading the parameters, before any probe computes anything."""
    before = children_cpu()
    problems, _ = unusable_hashes([stored])
    assert problems == {
        stored: f"checking a password against this hash costs too much ({why}): every login would pay that, "
        "and the login programs refuse it; use cheaper settings"
    }
    assert probes == [] and children_cpu() - before < 0.5


def test_costs_within_the_limit_are_probed_as_before(probes):
    usable = [crypt(b"x", setting(prefix, cost).encode()).decode() for prefix, cost in ((b"$6$", 10_000), (b"$2b$", 6))]
    assert usable[0].startswith("$6$rounds=10000$") and usable[1].startswith("$2b$06$")
    problems, _ = unusable_hashes(usable)
    assert problems == {} and probes == [(0, 0), (1, 0)]
