"""Password checks follow VMailMgr's crypt_cmp [compat: hashing]; new hashes come from libxcrypt."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import FIXTURE_PASSWORDS, STEPS, step_dir
from vmreconcile.formats.cdb import CdbReader
from vmreconcile.formats.hashing import (
    SCHEMES,
    HashingError,
    hash_password,
    looks_like_hash,
    scheme_of,
    verify_password,
)
from vmreconcile.formats.vpwentry import decode_record

#: alice's password before step 08 changed it.
ALICE_BEFORE = "alice-pass-1"


def fixture_users(step: str):
    data = (step_dir(step) / "passwd.cdb").read_bytes()
    return [decode_record(k, v) for k, v in CdbReader(data).items()]


@pytest.mark.parametrize("step", STEPS)
def test_every_fixture_password_verifies_and_wrong_ones_do_not(step):
    checked = 0
    for user in fixture_users(step):
        plain = FIXTURE_PASSWORDS.get(user.name)
        if user.name == "alice" and step < "08":
            plain = ALICE_BEFORE
        if plain is None:
            assert user.password == "*"
            assert not verify_password("*", user.password)
            continue
        assert verify_password(plain, user.password), user.name
        assert not verify_password(plain + "x", user.password)
        assert not verify_password(plain.upper(), user.password)
        assert not verify_password("", user.password)
        checked += 1
    assert checked >= (0 if step == "01-vsetup" else 6)


def test_alice_old_password_stops_working_after_vpasswd():
    alice = {u.name: u for u in fixture_users("08-vpasswd")}["alice"]
    assert not verify_password(ALICE_BEFORE, alice.password)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_new_hashes_verify_in_every_scheme(scheme):
    hashed = hash_password("s3cret pass:word", scheme)
    assert hashed.startswith(SCHEMES[scheme].decode())
    assert scheme_of(hashed) == scheme
    assert verify_password("s3cret pass:word", hashed)
    assert not verify_password("s3cret pass:worD", hashed)
    assert hash_password("s3cret pass:word", scheme) != hashed  # fresh salt every time


def test_default_scheme_is_yescrypt():
    assert hash_password("x").startswith("$y$")


@pytest.mark.parametrize("stored", ["*", "!", "!$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1", "", "$1$", "garbage"])
def test_disabled_and_invalid_hashes_never_match(stored):
    for plain in ("", "*", "!", "secret", "garbage", stored):
        assert not verify_password(plain, stored)


def test_old_md5_and_null_crypt_and_des():
    old = "3" + hashlib.md5(b"pw").hexdigest()
    assert verify_password("pw", old) and not verify_password("pW", old)
    assert verify_password("plain", "$0$plain") and not verify_password("plai", "$0$plain")
    assert not verify_password("", "$0$")
    assert verify_password("secret", "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1")
    assert scheme_of(old) == "old-md5" and scheme_of("$0$x") == "null-crypt"


def test_empty_or_multiline_passwords_are_not_hashed():
    with pytest.raises(HashingError):
        hash_password("")
    with pytest.raises(HashingError):
        hash_password("a\nb")
    with pytest.raises(HashingError, match="unknown password scheme"):
        hash_password("a", "rot13")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("$y$j9T$abc$def", True),
        ("$6$salt$hash", True),
        ("$0$x", True),
        ("secret", False),
        ("my password", False),
        ("3" + "a" * 32, True),
        ("$2b$10$" + "a" * 53, True),
    ],
)
def test_looks_like_hash(text, expected):
    assert looks_like_hash(text) is expected
