"""What vauthd answers: a dict key -> the passdb or userdb facts of a login, and the user list.

Keys (after Dovecot's ``shared/``) are ``passdb/<login>`` and ``userdb/<login>``, optionally
followed by ``/<local address>`` (the example's ``%{lip}`` variant: the address the client
connected to stands in for qmail's ``TCPLOCALHOST``, so IP-based virtual domains work for bare
names). Logins resolve exactly as checkvpw resolves them [compat: login-names]: ASCII-lowercased,
split at the first separator (no separator: the local address, else the host name), locals,
virtualdomains with wildcards, base-user prefixes, uid 0 never a base user, system accounts only
when ``/etc/vmailmgr/vmreconcile-system-logins`` allows them. Dovecot then verifies the password
itself, so the rules are split by who decides:

passdb (``O`` + JSON, or ``N``)
    ``password`` in a scheme Dovecot verifies: crypt(3) strings as ``{CRYPT}`` (Dovecot's CRYPT
    is the same libxcrypt checkvpw uses), VMailMgr's ``$0$`` "null crypt" as ``{PLAIN}``, its
    old MD5 (``3`` + 32 lower-case hex digits) as ``{PLAIN-MD5}``. ``N`` for an unknown name, an
    alias (no mailbox) and an entry no password can match (``*``, ``!``, empty; anything else
    that is no hash is also logged), and ``N`` (logged) for a hash whose cost parameters are over
    `formats.hashcost`'s limits, the ones validate applies: Dovecot would compute it on every
    attempt, so it is never served. An expired entry gets its password plus ``nologin`` and
    ``reason``: Dovecot checks the password first, as VMailMgr does [compat: checkvpw], so a
    wrong password stays "authentication failed" and only the right one learns "Account has
    expired" — a permanent refusal, never a temporary failure. The userdb facts ride along as
    ``userdb_*`` fields, so with ``userdb { driver = prefetch }`` a login costs one lookup.
userdb (``O`` + JSON, or ``N``)
    ``uid``/``gid`` of the base user; ``home`` = the virtual user's maildir (absolute) and
    ``mail = maildir:~``, the layout checkvpw's Dovecot example uses (a maildir name with ``:``,
    ``users/Henry:Ford``, cannot be written into a mail location); Dovecot's quota rules from
    the hard quota and message-count limit; and the ``VUSER_*`` facts as ``vuser_*`` fields. ``N`` for unknown names, aliases
    and expired entries (no delivery, as vdeliver refuses it). A password that cannot log in
    does not matter here: such a mailbox still gets mail.
iteration (``I`` on ``userdb/``)
    one row per mailbox userdb would answer, as ``<user>@<domain>`` under the first concrete
    domain that reaches it (authpipe's ENUMERATE rule), then the end line; produced in short
    stretches, other connections served in between (`Answers.iterate`).

A stored maildir that leaves the base user's home (absolute, or ``..``) is refused and logged:
Dovecot would otherwise open it as the base user (a deliberate difference from checkvpw).
A table that exists but cannot be used answers ``F`` (Dovecot: temporary failure) for the
logins of that one base user; nothing here raises towards the server.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator

from ...formats.cdb import CdbError
from ...formats.hashcost import cost_problem
from ...formats.hashing import DISABLED_MARKERS, scheme_of
from ...formats.vpwentry import RecordError
from ...host import BaseUser
from ...model import VirtualUser, ascii_lower, vuser_environment
from ..courier.directory import Refused
from ..login import core as authcore
from .protocol import ITERATION_END, NOT_FOUND, Iterate, failed, found, iteration_row
from .tablecache import CopiedTables

PASSDB = "passdb"
USERDB = "userdb"
SHARED = "shared/"
#: The one iteration path served (Dovecot's ``iterate_prefix = userdb/``).
USERDB_PATH = SHARED + USERDB + "/"
#: Records an iteration looks at between two `PAUSE` chunks (about 2 ms of work: measured by
#: bench/bench_vauthd_listing.py).
ITERATION_PAUSE_RECORDS = 512
#: The chunk that means "nothing to send yet; serve the others, then ask again" (server.py).
PAUSE = b""

#: The mailbox of a system-account login (checkvpw's ``Maildir`` argument, relative to the home).
SYSTEM_MAILDIR = "Maildir"
#: Dovecot reads a quota limit of 0 as "unlimited"; VMailMgr's 0 (vdeliver) allows nothing.
NOTHING_FITS = "*:storage=1B"

Log = Callable[[str], None]


def parse_key(key: str) -> tuple[str, str, str] | None:
    """``(kind, login, local address)`` of a lookup key, or None for keys vauthd does not serve."""
    if not key.startswith(SHARED):
        return None
    kind, sep, rest = key[len(SHARED) :].partition("/")
    if kind not in (PASSDB, USERDB) or not sep:
        return None
    login, _, local = rest.partition("/")
    if not login or "/" in local:
        return None
    return kind, login, local


def dovecot_password(stored: str) -> str | None:
    """``stored`` in a scheme Dovecot verifies the way checkvpw would, or None if none can.

    None for the "no login" markers and for values that are no hash at all (VMailMgr's
    ``crypt_cmp`` never matches those either).
    """
    scheme = scheme_of(stored)
    if scheme == "null-crypt":
        return "{PLAIN}" + stored[3:] if len(stored) > 3 else None
    if scheme == "old-md5":
        digits = stored[1:]
        # VMailMgr compares lower-case hex only; Dovecot's PLAIN-MD5 would also accept upper case.
        return "{PLAIN-MD5}" + digits if all(c in "0123456789abcdef" for c in digits) else None
    if not stored or stored.startswith(DISABLED_MARKERS) or any(c < " " or c == "\x7f" for c in stored):
        return None
    if scheme is not None or (stored.startswith("$") and "$" in stored[1:]):
        return "{CRYPT}" + stored  # libxcrypt decides, in Dovecot as in checkvpw
    return None


def no_login_marker(stored: str) -> bool:
    """True for the stored values that mean "no password login" on purpose (not worth a log line)."""
    return not stored or stored.startswith(DISABLED_MARKERS)


def maildir_path(home: str, directory: str) -> str | None:
    """The absolute maildir of a stored ``./users/me``, or None when it would leave ``home``."""
    if not directory or directory.startswith("/") or "\0" in directory:
        return None
    path = os.path.normpath(os.path.join(home, directory))
    if path == home or not path.startswith(home.rstrip("/") + "/"):
        return None
    return path


def quota_fields(user: VirtualUser) -> dict[str, str]:
    """Dovecot quota rules for the hard quota and the message-count limit (bytes, messages).

    The message-size limit is not passed as ``quota_max_mail_size``: Dovecot 2.3's LMTP answers
    an oversized message with a *temporary* 451, so the sender would retry for days instead
    of getting vdeliver's bounce. It stays a ``vuser_msgsize`` fact (and a job for the MTA).
    """
    rules = []
    if user.hard_quota == 0 or user.message_count_limit == 0:
        rules.append(NOTHING_FITS)
    else:
        if user.hard_quota is not None:
            rules.append(f"*:storage={user.hard_quota}B")
        if user.message_count_limit is not None:
            rules.append(f"*:messages={user.message_count_limit}")
    return {("quota_rule" if n == 1 else f"quota_rule{n}"): rule for n, rule in enumerate(rules, 1)}


def userdb_fields(base: BaseUser, home: str, user: VirtualUser | None, virtual: str) -> dict[str, object]:
    """The userdb reply of a virtual user (``user``) or of a system account (None)."""
    if user is None:
        return {"uid": base.uid, "gid": base.gid, "home": home, "mail": f"maildir:~/{SYSTEM_MAILDIR}"}
    fields: dict[str, object] = {"uid": base.uid, "gid": base.gid, "home": home, "mail": "maildir:~"}
    fields.update(quota_fields(user))
    fields["vuser"] = virtual
    fields.update((name.lower(), value) for name, value in vuser_environment(user).items())
    return fields


def encode(fields: dict[str, object]) -> bytes:
    """Compact JSON (no raw control bytes); names that are not UTF-8 keep their raw bytes."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogateescape")


class NotFound(Exception):
    """Answer ``N``; ``reason`` is logged in verbose mode, or always when ``notable``."""

    def __init__(self, reason: str, notable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.notable = notable


class Answers:
    """Answers lookups and iterations from a `CopiedTables` directory; never raises."""

    def __init__(self, directory: CopiedTables, log: Log, verbose: bool = False) -> None:
        self.directory = directory
        self.log = log
        self.verbose = verbose

    # lookups ---------------------------------------------------------------------------------

    def lookup(self, key: str) -> bytes:
        """The reply line to ``L<key>``: found, not found or failed."""
        parsed = parse_key(key)
        if parsed is None:
            if self.verbose:
                self.log(f"lookup {key!r}: not a key vauthd serves")
            return NOT_FOUND
        kind, login, local = parsed
        try:
            fields = self.account(kind, ascii_lower(login), local)
            reply = found(encode(fields))
        except NotFound as missing:
            if self.verbose or missing.notable:
                self.log(f"{kind} {login!r}: not found: {missing.reason}")
            return NOT_FOUND
        except Refused as refused:  # only temporary ones get here
            self.log(f"{kind} {login!r}: failed: {refused.reason}")
            return failed(refused.reason.split(":", 1)[0])
        except Exception as exc:  # a bug must cost one lookup, not the server
            self.log(f"{kind} {login!r}: internal error: {type(exc).__name__}: {exc}")
            return failed("internal error")
        if self.verbose:
            self.log(f"{kind} {login!r}: found")
        return reply

    def account(self, kind: str, login: str, local: str) -> dict[str, object]:
        """The JSON fields for ``kind`` of ``login``; `NotFound`, or `Refused` (temporary)."""
        try:
            base, virtual = self.directory.resolve(login, {"TCPLOCALHOST": local} if local else {})
        except Refused as refused:
            if refused.temporary:
                raise
            raise NotFound(refused.reason) from None
        if not virtual:
            return self.system_account(kind, base)
        table = self.directory.table(base)
        try:
            user = table.record(virtual) if table is not None else None  # memoised: a hot name is decoded once
        except RecordError as exc:
            raise NotFound(f"corrupt record: {exc}", notable=True) from None
        except CdbError as exc:  # e.g. a probe run longer than MAX_PROBES: that base user's logins only
            raise Refused(f"{authcore.MSG_TABLE_UNUSABLE}: {exc}", temporary=True) from None
        if user is None or not user.has_mailbox or not user.directory:
            raise NotFound(authcore.MSG_UNKNOWN_VIRTUAL)
        home = maildir_path(self.directory.home(base), user.directory)
        if home is None:
            raise NotFound(f"maildir {user.directory!r} is outside the base user's home", notable=True)
        expired = user.expires is not None and user.expires < int(time.time())
        if kind == USERDB:
            if expired:
                raise NotFound(authcore.MSG_EXPIRED)
            return userdb_fields(base, home, user, virtual)
        costly = cost_problem(user.password)
        if costly is not None:  # Dovecot would compute it on every attempt: not served, like a bad entry
            raise NotFound(f"{authcore.MSG_HASH_TOO_COSTLY}: {costly}", notable=True)
        password = dovecot_password(user.password)
        if password is None:
            notable = not no_login_marker(user.password)
            raise NotFound("the stored password is not a hash Dovecot can check" if notable else "no password", notable)
        if expired:
            return {"password": password, "nologin": "y", "reason": authcore.MSG_EXPIRED}
        return self.with_prefetch({"password": password}, userdb_fields(base, home, user, virtual))

    def system_account(self, kind: str, base: BaseUser) -> dict[str, object]:
        """A plain system account (``base@localhost``), only when system logins are enabled."""
        if not authcore.system_logins_enabled(self.directory.host):
            raise NotFound(authcore.MSG_SYSTEM_LOGINS_DISABLED)
        fields = userdb_fields(base, self.directory.home(base), None, "")
        if kind == USERDB:
            return fields
        stored = authcore.shadow_hash(self.directory.host, base.name)
        costly = cost_problem(stored) if stored is not None else None
        if costly is not None:
            raise NotFound(f"{authcore.MSG_HASH_TOO_COSTLY}: {costly}", notable=True)
        password = dovecot_password(stored) if stored is not None else None
        if password is None:
            raise NotFound("the system account has no usable password")
        return self.with_prefetch({"password": password}, fields)

    @staticmethod
    def with_prefetch(passdb: dict[str, object], userdb: dict[str, object]) -> dict[str, object]:
        passdb.update(("userdb_" + name, value) for name, value in userdb.items())
        return passdb

    # iteration -------------------------------------------------------------------------------

    def iterate(self, request: Iterate) -> Iterator[bytes]:
        """Reply lines for ``I``: a row per mailbox, then the end line (or ``F`` on failure).

        Lazy: the server pulls rows only as fast as the client reads them, and an empty chunk
        (`PAUSE`) after every `ITERATION_PAUSE_RECORDS` records looked at hands the server
        back its loop, so a table of a million aliases (seconds to walk, no row to send) delays
        other connections' lookups by one stretch (a few ms), not by the whole walk.
        """
        if request.path != USERDB_PATH:
            self.log(f"iteration of {request.path!r} refused: vauthd lists users only under {USERDB_PATH!r}")
            yield failed(f"vauthd lists users only under {USERDB_PATH}")
            return
        rows = 0
        try:
            for entry in self.directory.listing(ITERATION_PAUSE_RECORDS):
                if entry is None:
                    yield PAUSE  # let the server answer other connections before the next stretch
                    continue
                address, _base, user, home = entry
                if maildir_path(home, user.directory) is None:
                    continue
                yield iteration_row(USERDB_PATH + address)
                rows += 1
                if request.max_rows and rows >= request.max_rows:
                    break
        except Exception as exc:  # Dovecot: "User listing returned failure"
            self.log(f"iteration failed after {rows} users: {type(exc).__name__}: {exc}")
            yield failed("user listing failed")
            return
        yield ITERATION_END
