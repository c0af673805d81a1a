"""Password hashes as VMailMgr checks them ([compat: hashing]), and new hashes for vmreconcile.

Verification follows ``crypt_cmp``: empty never matches, ``3``+32 hex is "old MD5", ``$0$`` is
VMailMgr's plaintext "null crypt", everything else goes to the system crypt(3) — libxcrypt,
called through ``ctypes`` so this module stays standard-library only (the runtime needs it).
The final comparison is constant-time. New hashes use ``crypt_gensalt_rn`` with salt bytes
from ``os.urandom`` (VMailMgr seeded ``random()`` from the clock, [compat: differences]).
"""

from __future__ import annotations

import os
from _operator import _compare_digest as compare_digest  # what hmac.compare_digest is; hmac loads OpenSSL

from .hashcost import cost_problem

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Scheme name -> crypt(3) prefix. yescrypt is Debian 12's own default for /etc/shadow.
SCHEMES = {
    "yescrypt": b"$y$",
    "sha512-crypt": b"$6$",
    "sha256-crypt": b"$5$",
    "bcrypt": b"$2b$",
    "md5-crypt": b"$1$",
}
DEFAULT_SCHEME = "yescrypt"
#: crypt_gensalt cost per scheme (0 = libxcrypt's default); bcrypt's default of 5 is too cheap.
_COST = {"bcrypt": 10}

#: Stored values that can never match and mean "no password login" ([compat: hashing]).
DISABLED_MARKERS = ("*", "!")

_CRYPT_DATA_SIZE = 32768 + 384 + 512 + 4 + 30000  # >= sizeof(struct crypt_data) in libxcrypt
_lib = None


class HashingError(RuntimeError):
    """libcrypt is missing or refused to make a hash."""


def _libcrypt() -> Any:
    """libxcrypt, loaded on first use.

    ``ctypes`` is imported here, not at module level: a login whose hash `runtime.login.fastcrypt`
    handles ($1$, $0$, old MD5) never pays for it (~2 ms). It is a root-owned standard-library
    module, so importing it after a setuid loads nothing a base user can influence.
    """
    global _lib
    if _lib is None:
        import ctypes

        try:
            lib = ctypes.CDLL("libcrypt.so.1", use_errno=True)
        except OSError as exc:  # pragma: no cover - every Debian has libcrypt1
            raise HashingError(f"cannot load libcrypt.so.1: {exc}") from exc
        lib.crypt_r.restype = ctypes.c_char_p
        lib.crypt_r.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
        lib.crypt_gensalt_rn.restype = ctypes.c_char_p
        lib.crypt_gensalt_rn.argtypes = (
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        )
        _lib = lib
    return _lib


def crypt(plain: bytes, setting: bytes) -> bytes | None:
    """crypt(3) through libxcrypt's ``crypt_r``; None where it fails (never a '*0' token)."""
    if b"\0" in plain or b"\0" in setting:
        return None
    lib = _libcrypt()
    import ctypes

    data = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
    result = lib.crypt_r(plain, setting, data)
    if not result or result.startswith(b"*"):
        return None
    return bytes(result)


def _as_bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def verify_password(plain: str | bytes, stored: str | bytes) -> bool:
    """True when ``plain`` matches the stored hash exactly as VMailMgr's ``crypt_cmp`` decides.

    An empty password or stored value never matches; ``*``, ``!...`` and anything that is not
    a valid hash never match either, nor does a hash whose cost is over `hashcost`'s limits (it
    is never computed: callers that want to say why ask `hashcost.cost_problem` first).
    """
    plain_b, stored_b = _as_bytes(plain), _as_bytes(stored)
    if not plain_b or not stored_b:
        return False
    if len(stored_b) == 33 and stored_b.startswith(b"3"):
        import hashlib  # only old MD5 needs it: keep it off the start-up path

        computed = b"3" + hashlib.md5(plain_b).hexdigest().encode()
    elif stored_b.startswith(b"$0$"):
        computed = b"$0$" + plain_b
    elif stored_b == b"*" or stored_b.startswith(b"!") or _too_costly(stored_b):
        return False
    else:
        computed = crypt(plain_b, stored_b) or b""
    return bool(computed) and compare_digest(computed, stored_b)


def _too_costly(stored: bytes) -> bool:
    return cost_problem(stored.decode("utf-8", "surrogateescape")) is not None


def hash_password(plain: str | bytes, scheme: str = DEFAULT_SCHEME) -> str:
    """A new crypt(3) string for ``plain`` in ``scheme`` (one of `SCHEMES`)."""
    plain_b = _as_bytes(plain)
    if not plain_b:
        raise HashingError("refusing to hash an empty password")
    if b"\n" in plain_b or b"\r" in plain_b or b"\0" in plain_b:
        raise HashingError("a password may not contain CR, LF or NUL")
    try:
        prefix = SCHEMES[scheme]
    except KeyError:
        raise HashingError(f"unknown password scheme {scheme!r}; use one of {', '.join(SCHEMES)}") from None
    lib = _libcrypt()
    import ctypes

    random_bytes = os.urandom(32)
    out = ctypes.create_string_buffer(256)
    setting = lib.crypt_gensalt_rn(prefix, _COST.get(scheme, 0), random_bytes, len(random_bytes), out, len(out))
    if not setting:
        raise HashingError(f"libcrypt cannot make a {scheme} salt (errno {ctypes.get_errno()})")
    result = crypt(plain_b, setting)
    if result is None:
        raise HashingError(f"libcrypt refused to hash with {setting!r}")
    return result.decode("ascii")


def scheme_of(stored: str) -> str | None:
    """The scheme name of a stored hash, ``null-crypt``/``old-md5``/``des``, or None."""
    if stored.startswith("$0$"):
        return "null-crypt"
    if len(stored) == 33 and stored.startswith("3"):
        return "old-md5"
    for name, prefix in SCHEMES.items():
        if stored.startswith(prefix.decode()):
            return name
    if stored.startswith(("$2y$", "$2a$")):
        return "bcrypt"
    if len(stored) == 13 and all(c.isalnum() or c in "./" for c in stored):
        return "des"
    return None


def looks_like_hash(stored: str) -> bool:
    """True for strings a crypt check could ever match (used to refuse plaintext in YAML)."""
    scheme = scheme_of(stored)
    if scheme is None or scheme == "null-crypt":
        return scheme == "null-crypt"
    if scheme in ("old-md5",):
        return all(c in "0123456789abcdef" for c in stored[1:])
    return "$" in stored[1:] or scheme == "des"
