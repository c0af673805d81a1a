"""runtime.login.fastcrypt agrees with libxcrypt (through formats.hashing) on every input."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from vmreconcile.formats.hashing import crypt, verify_password
from vmreconcile.runtime.login.core import verify
from vmreconcile.runtime.login.fastcrypt import check, md5_crypt

SALT = st.text(alphabet="./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", max_size=8)


def test_reference_vector():
    assert md5_crypt(b"secret", b"abcdefgh") == b"$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"  # [compat: hashing]
    assert check(b"carol-pw", b"$1$abcdefgh$IvHnD.uhYhhpxAiK9IT/C/") is True  # fixtures README


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=80).filter(lambda b: b"\0" not in b), SALT)
def test_md5_crypt_matches_libxcrypt(password, salt):
    expected = crypt(password, b"$1$" + salt.encode() + b"$")
    assert md5_crypt(password, salt.encode()) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=40),
    st.one_of(
        st.binary(max_size=40),
        st.builds(
            lambda p, s: crypt(p, b"$1$" + s.encode() + b"$") or b"",
            st.binary(min_size=1, max_size=20).filter(lambda b: b"\0" not in b),
            SALT,
        ),
        st.builds(lambda p: b"$0$" + p, st.binary(max_size=20)),
        st.builds(lambda p: b"3" + hashlib.md5(p).hexdigest().encode(), st.binary(max_size=20)),
        st.builds(lambda s, t: b"$1$" + s + b"$" + t, st.binary(max_size=10), st.binary(max_size=24)),
    ),
)
def test_check_agrees_with_verify_password(plain, stored):
    decided = check(plain, stored)
    if decided is not None:
        assert decided == verify_password(plain, stored)
    # and the combined path the runtime uses always equals the foundation's answer
    as_text = lambda raw: raw.decode("utf-8", "surrogateescape")  # noqa: E731
    assert verify(as_text(plain), as_text(stored)) == verify_password(plain, stored)


def test_right_password_for_each_fast_scheme():
    for stored in (md5_crypt(b"pw", b"salt1234"), b"$0$pw", b"3" + hashlib.md5(b"pw").hexdigest().encode()):
        assert check(b"pw", stored) is True
        assert check(b"pW", stored) is False
        assert check(b"", stored) is False
    assert check(b"pw", b"$6$x$y") is None  # left to libxcrypt
    assert check(b"pw", b"$1$toolongsalt$" + b"a" * 22) is None
