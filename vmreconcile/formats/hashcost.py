"""What one password check may cost: the one limit validate and every runtime checker apply.

A stored hash carries its own cost (``$6$rounds=999999999$``, bcrypt's ``$2b$31$``, yescrypt's
N and r). Whoever can write a table (a tenant owns its ``passwd.cdb``) could otherwise make every
login attempt cost minutes of CPU as root in checkvpw, authpipe, or in Dovecot for hashes vauthd
serves. So the cost parameters are bounded here, by pure string inspection (no crypt call), and:

* validate (`desired.hashcheck`) refuses a hash above these limits before probing it, and
  probes the rest with a CPU timer of `MAX_CHECK_CPU_SECONDS` for what the rules do not see;
* checkvpw, vauthenticate, authvmailmgr and authpipe refuse the login (logged as a clear error),
  and vauthd does not serve such a hash to Dovecot ("not found", logged).

Each limit is about one second of CPU on a current x86 core (half of `MAX_CHECK_CPU_SECONDS`),
and far above what any tool writes by default (libxcrypt: sha-crypt 5,000 rounds, bcrypt cost
5-10, yescrypt N=4096 x r=32). Hashes without a cost parameter (DES, ``$1$``, ``$3$``) cost
about the same every time and are not bounded here. A cost parameter this module cannot read
exactly (``+4000000000``, leading zeros, a ``rounds=`` where it does not belong, too few base-64
characters) counts as over the limit: libxcrypt's own parsers are laxer than they look (``strtoul``
takes signs and wraps), so "unknown" must never mean "cheap". Standard library only, no ``re``: runtime
programs import this on every login.
"""

from __future__ import annotations

#: CPU seconds one check may take at most: validate's prober stops a probe that takes longer.
MAX_CHECK_CPU_SECONDS = 2
#: sha256-crypt/sha512-crypt ``rounds=`` (default 5,000; 5,000,000 is ~1 s).
MAX_SHA_CRYPT_ROUNDS = 5_000_000
#: bcrypt's cost, a power of two (default 10 for vmreconcile's own hashes; 14 is ~0.75 s, 15 ~1.5 s).
MAX_BCRYPT_COST = 14
#: yescrypt and scrypt: N x r x p, in 128-byte blocks (2^21 blocks = 256 MiB, ~0.7 s; libxcrypt's
#: default yescrypt is 2^12 x 32 = 2^17).
MAX_SCRYPT_BLOCKS = 1 << 21
#: sha1crypt (``$sha1$<rounds>$``) iterations (~0.9 s).
MAX_SHA1_CRYPT_ROUNDS = 1_000_000
#: Sun MD5 (``$md5,rounds=N$`` or ``$md5$rounds=N$``) extra rounds (~0.7 s).
MAX_SUN_MD5_ROUNDS = 500_000
#: BSDi extended DES (``_`` + 4 count characters) iterations (2^24 - 1 at most is ~2 s; 2^23 ~1 s).
MAX_BSDI_ROUNDS = 1 << 23

#: crypt(3)'s base-64 alphabet: a character's value is its index.
_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _b64_number(text: str) -> int | None:
    """``text`` as a little-endian base-64 number (6 bits a character); None if not base 64."""
    value = 0
    for shift, char in enumerate(text):
        index = _ITOA64.find(char)
        if index < 0:
            return None
        value |= index << (6 * shift)
    return value


def _decimal(text: str) -> int | None:
    """``text`` as a canonical decimal number (first digit 1-9, ASCII digits only, at most 10
    digits), else None.

    None means "cost unknown", and callers refuse it: libxcrypt reads some counts with
    ``strtoul``, which also takes ``+``, ``-`` (wrapping ``-4294000000`` to a huge count), leading
    blanks and any number of leading zeros. Never cut a number short: ``0000000000004000000000``
    is four billion, not four hundred.
    """
    if not 1 <= len(text) <= 10 or not text.isascii() or not text.isdigit() or text[0] == "0":
        return None
    return int(text)


def _count_problem(what: str, text: str, limit: int) -> str | None:
    """Why the decimal count ``text`` after ``what`` (``"sha1crypt rounds "``) is over ``limit``
    (or unreadable), or None."""
    count = _decimal(text)
    if count is None:
        return f"{what}{text[:24]!r} is not a plain decimal number (1 to 10 digits): its cost is unknown"
    if count > limit:
        return f"{what}{count} is more than {limit}"
    return None


def _field(stored: str, start: int) -> str:
    """The ``$``-terminated field of ``stored`` that begins at ``start``."""
    end = stored.find("$", start)
    return stored[start:] if end < 0 else stored[start:end]


def cost_problem(stored: str) -> str | None:
    """Why checking a password against ``stored`` would cost too much, or None.

    The reason names the parameter and the limit (``sha-crypt rounds=999999999 is more than
    5000000``). None also for values that are no hash at all: what crypt(3) refuses costs nothing.
    """
    if stored.startswith(("$5$rounds=", "$6$rounds=")):
        return _count_problem("sha-crypt rounds=", _field(stored, 10), MAX_SHA_CRYPT_ROUNDS)
    if stored.startswith("$2") and stored[3:4] == "$" and stored[2:3] in "abxy":
        return _bcrypt_problem(stored[4:7])
    if stored.startswith(("$y$", "$gy$")):
        return _yescrypt_problem(_field(stored, stored.index("$", 1) + 1))
    if stored.startswith("$7$"):
        return _scrypt_problem(stored[3:14])
    if stored.startswith("$sha1$"):
        return _count_problem("sha1crypt rounds ", _field(stored, 6), MAX_SHA1_CRYPT_ROUNDS)
    if stored.startswith(("$md5$", "$md5,")):
        return _sun_md5_problem(stored)
    if stored.startswith("_"):
        rounds = _b64_number(stored[1:5]) if len(stored) >= 5 else None
        if rounds is None:
            return f"BSDi DES count {stored[1:5]!r} is not 4 crypt base-64 characters: its cost is unknown"
        if rounds > MAX_BSDI_ROUNDS:
            return f"BSDi DES count {rounds} is more than {MAX_BSDI_ROUNDS}"
    return None


def _bcrypt_problem(cost_field: str) -> str | None:
    """bcrypt's cost: exactly two ASCII digits and a ``$``, as every bcrypt writes it."""
    digits = cost_field[:2]
    if len(cost_field) != 3 or cost_field[2] != "$" or not digits.isascii() or not digits.isdigit():
        return f"bcrypt cost {digits!r} is not two decimal digits: its cost is unknown"
    cost = int(digits)
    if MAX_BCRYPT_COST < cost <= 31:  # above 31 bcrypt refuses it: no cost
        return f"bcrypt cost {cost} is more than {MAX_BCRYPT_COST}"
    return None


def _sun_md5_problem(stored: str) -> str | None:
    """Sun MD5's extra rounds: ``$md5,rounds=N$`` or ``$md5$rounds=N$`` (libxcrypt takes both).

    libxcrypt looks for ``rounds=`` anywhere in the setting, so a ``rounds=`` anywhere else
    (``$md5$salt,rounds=N$``) is refused too rather than guessed about.
    """
    rounds_at = stored.find("rounds=")
    if rounds_at < 0:
        return None  # no extra rounds: a fixed cost
    if rounds_at != 5:
        return f"Sun MD5 rounds= at {stored[: rounds_at + 7]!r} is not where it can be bounded: its cost is unknown"
    end = 12
    while end < len(stored) and stored[end] not in ",$":
        end += 1
    return _count_problem("Sun MD5 rounds=", stored[12:end], MAX_SUN_MD5_ROUNDS)


def _blocks_problem(method: str, n_log2: int, r: int, p: int) -> str | None:
    blocks = (1 << n_log2) * r * p
    if blocks > MAX_SCRYPT_BLOCKS:
        return f"{method} N=2^{n_log2} x r={r} x p={p} is more than {MAX_SCRYPT_BLOCKS} blocks"
    return None


def _yescrypt_problem(params: str) -> str | None:
    """yescrypt's ``<flavour><N><r>`` (one character each, as libxcrypt writes them).

    N is 2^(value + 1), r is value + 1 (a single character holds r <= 48). Longer parameters
    (a larger r, or the optional p, t, g, NROM) are not decoded: their cost is unknown, refused.
    """
    if len(params) < 3:
        return None  # libxcrypt refuses it: no cost
    n_index, r_index = _ITOA64.find(params[1]), _ITOA64.find(params[2])
    if n_index < 0 or n_index >= 63:
        return None  # N would not fit in 64 bits: libxcrypt refuses it, no cost
    if len(params) > 3 or not 0 <= r_index <= 47:
        return f"yescrypt parameters {params!r} are not the ones vmreconcile can bound (flavour, N, r)"
    return _blocks_problem("yescrypt", n_index + 1, r_index + 1, 1)


def _scrypt_problem(params: str) -> str | None:
    """scrypt's ``$7$``: N as one character (2^value), then r and p as 5 characters each."""
    n_log2 = _ITOA64.find(params[:1]) if params else -1
    r, p = _b64_number(params[1:6]), _b64_number(params[6:11])
    if len(params) < 11 or n_log2 < 0 or r is None or p is None:
        return f"scrypt parameters {params!r} are not N, r and p in crypt base 64: their cost is unknown"
    return _blocks_problem("scrypt", n_log2, r, p)
