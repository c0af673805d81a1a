"""The login core shared by checkvpw, vauthenticate, authvmailmgr and authpipe.

VMailMgr's ``authenticate/authvlib.cc`` does the same job for all its login programs: split
the login name into user and domain, turn the domain into a base user [compat: login-names],
check the password against the base user's table or the system shadow file [compat: checkvpw],
drop to the base user (``set_user``) and export the ``VUSER_*`` environment. Each
program differs only in the shape of its request (read by the shared `read_login_data`),
which hooks it runs and how it reports the result, so those parts stay in the programs and
everything else lives here.

Typical use (what checkvpw does)::

    session = LoginSession(host, hook_prefix="checkvpw", error_variable="CHECKVPW_ERROR")
    try:
        account = session.authenticate(ascii_lowercased_login, password)
    except LoginFailure as failure:
        return session.fail(failure)          # sets the error variable, runs the hook
    ... account.base, account.virtual_name, account.user, account.home ...

Deliberate differences from VMailMgr [compat: differences] (also in docs/login-runtime.md):

* `LoginSession.set_user` calls ``setgroups([gid])`` before ``setgid``/``setuid``, so the
  session never keeps the caller's (root's) supplementary groups.
* Logins as a plain system account (``vbase1@unknown.example``, ``vbase1@localhost``) are
  refused unless ``/etc/vmailmgr/vmreconcile-system-logins`` says ``1``/``yes``.
* Accounts with uid 0 are never used as base users, so no login can become root.
* An empty supplied password never matches (VMailMgr's ``crypt_cmp`` agrees; stated here
  because front ends differ).

Standard library only. Every login is a fresh process, so imports are kept cheap: no
``typing``, ``signal`` or ``contextlib``; every module a login needs is imported before the
setuid, so the runtime copy does not even have to be readable by base users.
"""

from __future__ import annotations

import os
import sys
import time

# Everything a virtual login needs after the setuid is imported here, as root, so a runtime
# copy that the base user cannot read still works. (formats.hashing imports the standard
# library's ctypes and loads libcrypt only when a scheme outside fastcrypt's is checked.)
from ...formats.cdb import CdbError
from ...formats.config import PASSWD_CHANGEABLE, SYSTEM_LOGINS, ConfigChain, changeable_entries
from ...formats.control import find_virtual, is_local, parse_lines, virtualdomains_map
from ...formats.hashcost import cost_problem
from ...formats.hashing import verify_password
from ...formats.vpwentry import RecordError, user_key
from ...host import LOCAL_CONFIG_DIR, BaseUser, Host
from ...model import VirtualUser, ascii_lower, from_bytes, vuser_environment
from ...tables import TableError, lookup, open_table, table_path
from ..process import run_hook
from .fastcrypt import check as fast_check

#: Exit codes shared by checkvpw and vauthenticate [compat: checkvpw, courier].
EXIT_OK = 0
EXIT_LOGIN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_TEMPORARY = 111

MSG_UNKNOWN_BASE = "Invalid or unknown base user or domain"
MSG_BAD_PASSWORD = "Invalid or incorrect password"
MSG_UNKNOWN_VIRTUAL = "Invalid or unknown virtual user"
MSG_EXPIRED = "Account has expired"
MSG_EMPTY_USER = "Empty user name"
MSG_EMPTY_DOMAIN = "Empty domain name"
MSG_BAD_USER_DATA = "Bad user data in password file"
MSG_PRESETUID_FAILED = "Execution of presetuid failed"
MSG_SYSTEM_LOGINS_DISABLED = "System account logins are disabled"
MSG_NOT_VIRTUAL = "Not a virtual user"
MSG_TABLE_UNUSABLE = "Cannot read the virtual password table"
MSG_HASH_TOO_COSTLY = "Password hash too costly to check"
MSG_HOSTNAME = "Cannot determine the host name"
MSG_READ_ERROR = "Read error"
MSG_TOO_LONG = "Read buffer too long"


TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: importing typing costs ~2 ms per login
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, MutableMapping

    Environ = MutableMapping[str, str]


class LoginFailure(Exception):
    """A login that cannot go on: ``code`` is the exit code, ``message`` the hook's text.

    ``code`` 1 is "wrong credentials" (run the ``-loginfail`` hook), 2 bad input and 111 a
    temporary or system error (run the ``-error`` hook).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotVirtual(LoginFailure):
    """The name resolved to a plain system account and the caller wants virtual users only.

    authvmailmgr passes such logins to the next module; vauthenticate exits 1. Raised
    before any password check, so nothing has been verified yet.
    """

    def __init__(self, base: BaseUser) -> None:
        super().__init__(EXIT_LOGIN_FAILED, MSG_NOT_VIRTUAL)
        self.base = base


class Account:
    """A successful login: the base user, the virtual name as typed, and its table entry.

    ``user`` is None for a system-account login (then ``virtual_name`` is empty).
    ``home`` is where the base user's home really is (under the host root, if any).
    """

    __slots__ = ("base", "virtual_name", "user", "home")

    def __init__(self, base: BaseUser, virtual_name: str, user: VirtualUser | None, home: str) -> None:
        self.base = base
        self.virtual_name = virtual_name
        self.user = user
        self.home = home

    @property
    def is_virtual(self) -> bool:
        return self.user is not None

    @property
    def maildir(self) -> str:
        """The stored directory (``./users/me``), relative to ``home``; empty for system logins."""
        return self.user.directory if self.user is not None else ""


# --------------------------------------------------------------------------- runtime config


def _first_line(path: str) -> str | None:
    try:
        with open(path, "rb") as fp:
            raw = fp.read(4096)
    except OSError:
        return None
    return raw.decode("utf-8", "surrogateescape").split("\n", 1)[0].strip()


def system_logins_enabled(host: Host) -> bool:
    """``/etc/vmailmgr/vmreconcile-system-logins``: first line ``1``/``yes`` enables; else off."""
    value = _first_line(os.path.join(host.config_dir_str, SYSTEM_LOGINS))
    return value is not None and value.lower() in ("1", "yes")


def passwd_changeable(host: Host) -> frozenset[tuple[str, str]]:
    """``(base user, virtual user key)`` pairs whose password Courier's PASSWD may change.

    Read from ``/etc/vmailmgr/vmreconcile-passwd-changeable``, one ``<base>/<key>`` per
    line; blank lines and ``#`` comments are skipped; a missing file means "none".
    """
    try:
        with open(os.path.join(host.config_dir_str, PASSWD_CHANGEABLE), "rb") as fp:
            raw = fp.read(1 << 20)
    except OSError:
        return frozenset()
    pairs = set()
    for entry in changeable_entries(raw):
        base, sep, key = entry.partition("/")
        if sep and base and key:
            pairs.add((base, key))
    return frozenset(pairs)


def is_passwd_changeable(host: Host, base: str, virtual_name: str) -> bool:
    """True when ``base``/``virtual_name`` (lowercased like a table key) is listed."""
    return (base, from_bytes(user_key(virtual_name))) in passwd_changeable(host)


def undo_locale_coercion(environ: Environ) -> None:
    """Remove the ``LC_CTYPE=C.UTF-8`` that Python itself added at start-up (PEP 538).

    Started with no locale (``env -i``, qmail, Dovecot), the interpreter coerces the C locale
    and *exports* ``LC_CTYPE=C.UTF-8``, which every hook and child would then inherit. That
    case is recognisable: UTF-8 mode is on (locale was C/POSIX), ``LC_ALL`` is unset and
    ``LC_CTYPE`` is exactly ``C.UTF-8``. The caller's value was then unset or ``C``; unset
    means the same to children. Call it first thing in a login program's ``main``.
    """
    import sys

    if sys.flags.utf8_mode and not environ.get("LC_ALL") and environ.get("LC_CTYPE") == "C.UTF-8":
        del environ["LC_CTYPE"]


# --------------------------------------------------------------------------- the request


def read_login_data(fd: int, limit: int, close: bool = False) -> bytes:
    """Everything on ``fd`` up to end of file: how every login program takes its request.

    At most ``limit`` bytes (checkvpw 512 on fd 3, vauthenticate 511 on stdin, authvmailmgr
    8191 on fd 3: each the buffer its VMailMgr or Courier counterpart reads into). More, or a
    read error, raises `LoginFailure` (2). Reading stops as soon as the limit is passed, so a
    writer that never closes cannot keep us reading once it has sent too much. ``close``
    closes ``fd`` afterwards, also on failure: fd 3 must not reach the program started next.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            try:
                chunk = os.read(fd, limit + 1 - size)
            except OSError:
                raise LoginFailure(EXIT_BAD_INPUT, MSG_READ_ERROR) from None
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise LoginFailure(EXIT_BAD_INPUT, MSG_TOO_LONG)
    finally:
        if close:
            try:  # noqa: SIM105 - contextlib costs start-up time on every login
                os.close(fd)
            except OSError:
                pass


# --------------------------------------------------------------------------- name mapping


def split_login(name: str, separators: str, environ: Mapping[str, str]) -> tuple[str, str]:
    """User and domain of a login name [compat: login-names].

    Split at the first byte that is in ``separators``; without one the domain is
    ``$TCPLOCALHOST`` or else the host name (not lowercased). Raises `LoginFailure` (1) on
    an empty user or domain part.
    """
    cut = -1
    for index, char in enumerate(name):
        if char in separators:
            cut = index
            break
    if cut >= 0:
        user, domain = name[:cut], name[cut + 1 :]
    else:
        user = name
        domain = environ.get("TCPLOCALHOST", "")
        if not domain:
            try:
                domain = os.uname().nodename
            except OSError:  # pragma: no cover - uname does not fail on Linux
                raise LoginFailure(EXIT_TEMPORARY, MSG_HOSTNAME) from None
    if not user:
        raise LoginFailure(EXIT_LOGIN_FAILED, MSG_EMPTY_USER)
    if not domain:
        raise LoginFailure(EXIT_LOGIN_FAILED, MSG_EMPTY_DOMAIN)
    return user, domain


def _control_lines(host: Host, config: ConfigChain, name: str) -> tuple[str, ...]:
    """A qmail control file under ``qmail-root`` (global config); () when unreadable."""
    path = os.path.join(host.fspath(config.text("qmail-root")), "control", name)
    try:
        with open(path, "rb") as fp:
            return parse_lines(fp.read())
    except OSError:
        return ()


def full_name(user: str, domain: str, host: Host, config: ConfigChain) -> str:
    """``prefix-user`` for a virtual domain, else ``user`` unchanged (locals wins) [compat: login-names]."""
    if is_local(domain, _control_lines(host, config, "locals")):
        return user
    prefix = find_virtual(domain, virtualdomains_map(_control_lines(host, config, "virtualdomains")))
    if prefix:
        return prefix + "-" + user
    return user


def baseuser_candidates(full: str) -> list[tuple[str, str]]:
    """``(system name, virtual name)`` pairs to try, in VMailMgr's order [compat: login-names].

    The whole string first (virtual name empty), then each prefix ending before a ``-``,
    longest first. System names are lowercased; virtual names keep their case.
    """
    out = [(ascii_lower(full), "")]
    for index in range(len(full) - 1, -1, -1):
        if full[index] == "-":
            out.append((ascii_lower(full[:index]), full[index + 1 :]))
    return out


def lookup_baseuser(full: str, find_account: Callable[[str], BaseUser | None]) -> tuple[BaseUser, str] | None:
    """The first candidate that is a system account, with the virtual name; else None.

    ``find_account`` looks one account name up: ``Host.find_base_user`` for a one-shot login,
    authpipe's cached ``Directory.base_user`` in the long-lived process. Accounts with uid 0
    are skipped: a login may never become root (a vmreconcile fix).
    """
    for name, virtual in baseuser_candidates(full):
        if not name:
            continue
        base = find_account(name)
        if base is not None and base.uid != 0:
            return base, virtual
    return None


# --------------------------------------------------------------------------- passwords


def shadow_hash(host: Host, name: str) -> str | None:
    """The stored hash of a system account: ``/etc/shadow``, else the passwd field."""
    for file in ("/etc/shadow", "/etc/passwd"):
        try:
            with open(host.fspath(file), "rb") as fp:
                text = fp.read().decode("utf-8", "surrogateescape")
        except OSError:
            continue
        for line in text.split("\n"):
            fields = line.split(":")
            if len(fields) >= 2 and fields[0] == name:
                if file == "/etc/passwd" and fields[1] in ("x", ""):
                    break
                return fields[1]
    return None


def verify(plain: str, stored: str) -> bool:
    """``crypt_cmp`` [compat: hashing]. ``$1$``, ``$0$`` and old MD5 are checked by `fastcrypt`; other
    schemes go to libxcrypt (loaded on first use)."""
    if not plain or not stored:
        return False
    plain_b = plain.encode("utf-8", "surrogateescape")
    stored_b = stored.encode("utf-8", "surrogateescape")
    decided = fast_check(plain_b, stored_b)
    if decided is not None:
        return decided
    return verify_password(plain_b, stored_b)


def check_system_password(host: Host, name: str, password: str) -> bool:
    """True when ``password`` matches the system account's shadow hash."""
    stored = shadow_hash(host, name)
    return stored is not None and verify(password, stored)


# --------------------------------------------------------------------------- the session


class LoginSession:
    """One login attempt: the active config chain, the hook chain and the environment.

    Until `set_user` has dropped privileges, options and hooks come from ``/etc/vmailmgr``
    only [compat: options]; afterwards from ``~base/.vmailmgr`` then ``/etc/vmailmgr`` for options and
    ``/etc/vmailmgr`` then ``~base/.vmailmgr`` for hooks [compat: hooks].

    ``hook_prefix`` names the hooks (``checkvpw`` -> ``checkvpw-presetuid`` ...); None
    runs no hooks (vauthenticate). ``error_variable`` is set to the failure message before
    a failure hook runs. ``environ`` defaults to ``os.environ`` so children inherit it.
    """

    def __init__(
        self,
        host: Host,
        hook_prefix: str | None = None,
        error_variable: str | None = None,
        environ: Environ | None = None,
        now: int | None = None,
    ) -> None:
        self.host = host
        self.hook_prefix = hook_prefix
        self.error_variable = error_variable
        self.environ: Environ = os.environ if environ is None else environ
        self.now = int(time.time()) if now is None else now
        self.config: ConfigChain = host.global_config()
        self.hook_dirs: tuple[str, ...] = (host.config_dir_str,)
        self.base: BaseUser | None = None

    # hooks and failures ------------------------------------------------------------

    def run_hook(self, suffix: str) -> int:
        """Run ``<prefix>-<suffix>`` through the active hook chain; 0 without a prefix."""
        if not self.hook_prefix:
            return 0
        return run_hook(f"{self.hook_prefix}-{suffix}", self.hook_dirs, self.environ)

    def fail(self, failure: LoginFailure) -> int:
        """Report ``failure`` VMailMgr's way; return its exit code (the hook's is ignored).

        Sets ``error_variable``, then runs ``-loginfail`` for code 1 or ``-error``
        otherwise, as whoever the process is by now and through the active chain.
        """
        if self.error_variable:
            self.environ[self.error_variable] = failure.message
        self.run_hook("loginfail" if failure.code == EXIT_LOGIN_FAILED else "error")
        return failure.code

    # steps -------------------------------------------------------------------------

    def resolve(self, login: str, domain: str = "") -> tuple[BaseUser, str]:
        """Base user and virtual name (empty: system login) for a login name [compat: login-names].

        ``domain`` given (vauthenticate's separate field) is used as is; empty means split
        ``login`` at the separators, with the TCPLOCALHOST/host-name fallback.
        """
        if domain:
            user = login
            if not user:
                raise LoginFailure(EXIT_LOGIN_FAILED, MSG_EMPTY_USER)
        else:
            user, domain = split_login(login, self.config.text("separators"), self.environ)
        found = lookup_baseuser(full_name(user, domain, self.host, self.config), self.host.find_base_user)
        if found is None:
            raise LoginFailure(EXIT_LOGIN_FAILED, MSG_UNKNOWN_BASE)
        return found

    def set_user(self, base: BaseUser) -> str:
        """Become the base user [compat: checkvpw] (with supplementary groups dropped).

        Exports ``USER`` and ``HOME``, runs the ``-presetuid`` hook (global dir, as root),
        then setgroups([gid]), setgid, setuid, chdir(home), and switches to the domain
        config chain. Returns the home directory.
        """
        home = self.host.home_str(base)
        self.environ["USER"] = base.name
        self.environ["HOME"] = str(home)
        if self.run_hook("presetuid") != 0:
            raise LoginFailure(EXIT_TEMPORARY, MSG_PRESETUID_FAILED)
        try:
            os.setgroups([base.gid])
            os.setgid(base.gid)
            os.setuid(base.uid)
            os.chdir(home)
        except OSError:
            raise LoginFailure(EXIT_TEMPORARY, MSG_BAD_USER_DATA) from None
        self.base = base
        self.config = self.host.domain_config(base)
        self.hook_dirs = (self.host.config_dir_str, os.path.join(home, LOCAL_CONFIG_DIR))
        return home

    def find_virtual_user(self, base: BaseUser, virtual_name: str, password: str) -> VirtualUser:
        """The table entry for ``virtual_name`` if it may log in with ``password`` [compat: checkvpw].

        Refused (1): missing entry or a corrupt record, no mailbox (aliases), a password
        that does not match (``*``, empty, anything not a hash), ``expiry < now`` (checked
        after the password, as VMailMgr does). mailbox-enabled=0 is not a block. A table
        that exists but cannot be read is a temporary failure (111), and so is a stored hash
        whose cost is over `hashcost`'s limits: it is never computed (one login could cost
        minutes of CPU as root), and the reason goes to stderr (the log), not to the client.
        """
        home = self.host.home_str(base)
        try:
            reader = open_table(table_path(home, self.config.text("password-file")))
            if reader is not None:
                reader.check_layout()  # a crafted layout is refused here, not walked by the lookup
            user = lookup(reader, virtual_name) if reader is not None else None
        except RecordError:
            user = None
        except (TableError, CdbError, OSError):
            raise LoginFailure(EXIT_TEMPORARY, MSG_TABLE_UNUSABLE) from None
        if user is None or not user.has_mailbox or not user.directory:
            raise LoginFailure(EXIT_LOGIN_FAILED, MSG_UNKNOWN_VIRTUAL)
        costly = cost_problem(user.password)
        if costly is not None:
            sys.stderr.write(f"{MSG_HASH_TOO_COSTLY} (virtual user {virtual_name!r} of {base.name}): {costly}\n")
            raise LoginFailure(EXIT_TEMPORARY, MSG_HASH_TOO_COSTLY)
        if not verify(password, user.password):
            raise LoginFailure(EXIT_LOGIN_FAILED, MSG_BAD_PASSWORD)
        if user.expires is not None and user.expires < self.now:
            raise LoginFailure(EXIT_LOGIN_FAILED, MSG_EXPIRED)
        return user

    def export_virtual(self, user: VirtualUser) -> None:
        """Put the ``VUSER_*`` variables into the environment."""
        self.environ.update(vuser_environment(user))

    def authenticate(self, login: str, password: str, virtual_only: bool = False, domain: str = "") -> Account:
        """VMailMgr's ``authenticate()`` [compat: checkvpw]: name to account, becoming the base user.

        ``login`` is used as given (checkvpw lowercases it first; authvmailmgr does not).
        Sets ``VUSER`` as soon as the base user is known, becomes the base user, and for a
        virtual login exports ``VUSER_*``. ``domain`` is passed to `resolve`. With ``virtual_only`` a plain system account
        raises `NotVirtual` before any password check. Raises `LoginFailure` otherwise.
        """
        base, virtual = self.resolve(login, domain)
        self.environ["VUSER"] = virtual
        if not virtual:
            if virtual_only:
                raise NotVirtual(base)
            if not system_logins_enabled(self.host):
                raise LoginFailure(EXIT_LOGIN_FAILED, MSG_SYSTEM_LOGINS_DISABLED)
            if not check_system_password(self.host, base.name, password):
                raise LoginFailure(EXIT_LOGIN_FAILED, MSG_BAD_PASSWORD)
            home = self.set_user(base)
            return Account(base, "", None, home)
        home = self.set_user(base)
        user = self.find_virtual_user(base, virtual, password)
        self.export_virtual(user)
        return Account(base, virtual, user, home)
