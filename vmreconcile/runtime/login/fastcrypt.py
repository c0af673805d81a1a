"""Password checks for the hashes VMailMgr itself writes, without loading libcrypt.

Every login is a fresh process. Checking a password through `formats.hashing` means
importing ``ctypes`` and loading ``libcrypt.so.1`` (~2.5 ms); the MD5-crypt loop in pure
Python on the built-in ``_md5`` takes ~0.35 ms. So the three schemes VMailMgr writes or reads
without crypt(3) are checked here [compat: hashing]:

* ``$1$``: MD5-crypt (vadduser/vpasswd's default), for well-formed strings only;
* ``$0$``: VMailMgr's plain-text "null crypt";
* ``3`` + 32 hex digits: VMailMgr's old MD5.

`check` returns None for anything else (``$6$``, ``$y$``, DES, a malformed ``$1$``...), and the
caller then asks libxcrypt through `formats.hashing.verify_password`. The comparison is
constant-time. tests/runtime/test_fastcrypt.py checks it against libxcrypt.
"""

from __future__ import annotations

from _md5 import md5
from _operator import _compare_digest as compare_digest  # hmac.compare_digest without OpenSSL

_ITOA64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SALT_CHARS = frozenset(_ITOA64)
_MAGIC = b"$1$"


def md5_crypt(password: bytes, salt: bytes) -> bytes:
    """The ``$1$salt$hash`` string (glibc/libxcrypt ``md5_crypt``); ``salt`` at most 8 bytes."""
    salt = salt[:8]
    ctx = md5(password + _MAGIC + salt)
    alternate = md5(password + salt + password).digest()
    length = len(password)
    while length > 0:
        ctx.update(alternate[: min(16, length)])
        length -= 16
    bits = len(password)
    while bits:
        ctx.update(b"\0" if bits & 1 else password[:1])
        bits >>= 1
    final = ctx.digest()
    for round_ in range(1000):
        step = md5(password if round_ & 1 else final)
        if round_ % 3:
            step.update(salt)
        if round_ % 7:
            step.update(password)
        step.update(final if round_ & 1 else password)
        final = step.digest()
    out = bytearray()
    for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)):
        value = (final[a] << 16) | (final[b] << 8) | final[c]
        for _ in range(4):
            out.append(_ITOA64[value & 0x3F])
            value >>= 6
    value = final[11]
    for _ in range(2):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return _MAGIC + salt + b"$" + bytes(out)


def _well_formed_md5(stored: bytes) -> bytes | None:
    """The salt of a canonical ``$1$<0-8 salt chars>$<22 chars>`` string, else None."""
    rest = stored[3:]
    dollar = rest.find(b"$")
    if dollar < 0 or dollar > 8:
        return None
    salt, digest = rest[:dollar], rest[dollar + 1 :]
    if len(digest) != 22 or not _SALT_CHARS.issuperset(salt) or not _SALT_CHARS.issuperset(digest):
        return None
    return salt


def check(plain: bytes, stored: bytes) -> bool | None:
    """True/False for the schemes above, None when crypt(3) must decide.

    Empty values never match, as in ``crypt_cmp``; a NUL in the password never matches
    (crypt(3) cannot take one).
    """
    if not plain or not stored:
        return False
    if len(stored) == 33 and stored[:1] == b"3":
        return compare_digest(b"3" + md5(plain).hexdigest().encode(), stored)
    if stored.startswith(_MAGIC):
        salt = _well_formed_md5(stored)
        if salt is None:
            return None
        if b"\0" in plain:
            return False
        return compare_digest(md5_crypt(plain, salt), stored)
    if stored.startswith(b"$0$"):
        return compare_digest(b"$0$" + plain, stored)
    return None
