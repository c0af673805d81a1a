"""From a schema-shaped document to a `Spec`, checking what a schema cannot say.

Names ([compat: keys]), table keys that collide (``Me`` and ``me`` are one key), forwards that point
nowhere, catch-alls that point nowhere, a domain name routed to two base users, sizes and
dates that do not parse, and plaintext passwords. Warnings: VMailMgr's ``$0$`` "null crypt"
(plaintext in disguise), a soft quota above the hard quota, an alias that drops mail.

Defensive by design: the schema has already reported wrong types, so a value of the wrong
type is skipped here, never a traceback. Pure: ``{env:}``/``{file:}`` secrets are recorded,
never read (the planner reads them when it needs them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..formats.cdb import MAX_RECORD_SIZE
from ..formats.config import LIST, OPTIONS, UNSIGNED, layered_value, option_problem, password_file_problem
from ..formats.control import RCPTHOSTS_FILES
from ..formats.hashing import looks_like_hash, scheme_of
from ..formats.vpwentry import name_problem
from ..model import USER_FIELD_TABLE, OptionValue, ascii_lower
from . import units
from .errors import Diagnostic, PathPart
from .hashcheck import unusable_hashes
from .loops import Node, describe, find_loops
from .positions import locate
from .spec import HISTORY_KEEP_DEFAULT, HISTORY_KEEP_MAX, UNSET, DomainSpec, PasswordSpec, Position, Spec, UserSpec
from .yamlread import YMap

_HOST_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^{_HOST_LABEL}(?:\.{_HOST_LABEL})*$")
_BASE_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")
#: The characters `name_problem` refuses (all ASCII, so the str check equals the byte check).
_NAME_BAD_CHARS = re.compile(r"[/:\n\r\t \x00]")
#: Besides ``$id$...``, what may be a crypt hash (asked of libxcrypt): DES's 13 characters, BSDi's 20.
_CRYPT_HASH = re.compile(r"^(?:[./0-9A-Za-z]{13}|_[./0-9A-Za-z]{19})$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BAD_ADDRESS_CHARS = re.compile(r"[\s\x00-\x1f\x7f,<>()\[\]\\\"]")
#: qmail runs ``|<bindir>/vdeliver`` through /bin/sh: only characters the shell takes literally.
_BINDIR = re.compile(r"^/[A-Za-z0-9._+,:=@%/-]*$")
#: SMTP's limits (RFC 5321 4.5.3.1): the part before '@', and a whole address (a path of 256
#: octets holds 254 between its angle brackets). Domain names: 253 characters, labels 63 (DNS).
MAX_LOCAL_PART = 64
MAX_ADDRESS = 254
MAX_DOMAIN = 253
MAX_LABEL = 63
#: Bytes of a table record validate cannot see yet and allows for: a hash made from a secret
#: (at most ~130), the default directory (``./users/`` + a name of at most 64 octets), six
#: numbers (11 each), the flags and the separators. Everything else is counted exactly.
RECORD_ALLOWANCE = 1024
#: Options VMailMgr reads before it switches to the domain's config ([compat: options]).
GLOBAL_ONLY_OPTIONS = ("separators",)

#: YAML key -> unit, for every user field a YAML entry may give (from the field table).
_FIELD_UNITS = {f.name: f.unit for f in USER_FIELD_TABLE if f.yaml_rank}
_LABELS = {f.name: f.label for f in USER_FIELD_TABLE}


class _Checker:
    """Collects diagnostics; positions are looked up only when something is reported."""

    def __init__(self, doc: object) -> None:
        self.doc = doc
        self.diagnostics: list[Diagnostic] = []
        #: (path, value) of every password that may be a crypt hash: asked of libxcrypt at the end.
        self.hashes: list[tuple[tuple[PathPart, ...], str]] = []
        self.forwards = _Forwards()
        #: byte count -> how the YAML spelled it (``500 MiB``), for plans to show it that way
        self.size_spellings: dict[int, str] = {}
        #: the domain being checked (None: outside ``domains:``), and the spellings each domain
        #: (None: the global options) wrote first: what `DocumentFacts` keeps of a domain
        self.domain: str | None = None
        self.spellings_by_domain: dict[str | None, dict[int, str]] = {}

    def spelled(self, raw: object, parsed: object) -> None:
        """Remember the YAML's spelling of a size (the first one wins when two differ)."""
        if isinstance(parsed, int) and isinstance(raw, str):
            local = self.spellings_by_domain.setdefault(self.domain, {})
            if parsed not in local:
                spelling = units.size_spelling(raw)
                if spelling is not None:
                    local[parsed] = spelling
                    self.size_spellings.setdefault(parsed, spelling)

    def error(self, path: tuple[PathPart, ...], message: str, at_key: bool = False) -> None:
        self.diagnostics.append(Diagnostic(locate(self.doc, path, at_key), path, message))

    def warn(self, path: tuple[PathPart, ...], message: str, at_key: bool = False) -> None:
        self.diagnostics.append(Diagnostic(locate(self.doc, path, at_key), path, message, "warning"))

    def where(self, path: tuple[PathPart, ...], at_key: bool = True) -> str:
        pos = locate(self.doc, path, at_key)
        return str(pos) if pos else "(unknown place)"


def build_spec(doc: object, sources: tuple[str, ...] = ()) -> tuple[Spec | None, list[Diagnostic]]:
    """The `Spec` of a merged document and every diagnostic (the Spec is None on errors)."""
    spec, diagnostics, _facts = build_spec_with_facts(doc, sources)
    return spec, diagnostics


@dataclass(frozen=True, slots=True)
class DomainFacts:
    """What checking one domain found that the checks across domains need, so that a domain
    checked on its own can be checked with others later (`desired.incremental`): its table
    keys, each forward as (source key, target as written), and the sizes it spelled first."""

    keys: tuple[str, ...]
    forwards: tuple[tuple[str, str], ...]
    spellings: tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class DocumentFacts:
    """`DomainFacts` per domain, and the sizes the global options spelled."""

    domains: Mapping[str, DomainFacts]
    spellings: tuple[tuple[int, str], ...]


def build_spec_with_facts(
    doc: object, sources: tuple[str, ...] = ()
) -> tuple[Spec | None, list[Diagnostic], DocumentFacts]:
    """`build_spec`, and the `DocumentFacts` of the document."""
    check = _Checker(doc)
    spec, diagnostics = _build_spec(check, doc, sources)
    spellings = check.spellings_by_domain
    facts = DocumentFacts(
        domains={
            name: DomainFacts(
                keys=tuple(sorted(keys)),
                forwards=tuple(check.forwards.calls.get(name, ())),
                spellings=tuple(spellings.get(name, {}).items()),
            )
            for name, keys in check.forwards.keys.items()
        },
        spellings=tuple(spellings.get(None, {}).items()),
    )
    return spec, diagnostics, facts


def cross_domain_problem(domains: Sequence[DomainSpec], facts: Mapping[str, DomainFacts]) -> bool:
    """True when ``domains``, each free of problems on its own, have one together: a base user
    or a routed name taken twice, or a forwarding loop across domains.

    The guard of `desired.incremental`, which checks only the domains whose YAML changed and
    takes the others from its cache: when this is True it checks the whole configuration
    again, and `build_spec` reports the problem with its places. The loop check is the very
    one `build_spec` runs (`_Forwards`, `find_loops`), on the same calls.
    """
    owners: set[str] = set()
    routed: set[str] = set()
    forwards = _Forwards()
    for domain in domains:
        if domain.base_user in owners:
            return True
        owners.add(domain.base_user)
        names = [domain.name, *domain.domain_aliases]
        for key in names + (["." + domain.name] if domain.wildcard else []):
            if key in routed:
                return True
            routed.add(key)
        forwards.managed.update(name.lower() for name in names)
        for key in names:
            forwards.routes[key] = domain.name
        forwards.keys[domain.name] = set(facts[domain.name].keys)
    for domain in domains:
        for source, target in facts[domain.name].forwards:
            forwards.add(domain.name, source, target, (), "")
    return bool(find_loops(forwards.resolved()))


def _build_spec(check: _Checker, doc: object, sources: tuple[str, ...]) -> tuple[Spec | None, list[Diagnostic]]:
    if not isinstance(doc, dict):  # the schema reports anything but a mapping
        return (Spec(sources=sources) if doc is None else None), check.diagnostics
    qmail = _mapping(doc.get("qmail"))
    runtime = _mapping(doc.get("runtime"))
    passwords = _mapping(doc.get("passwords"))
    for where in (("version",), ("history", "keep")):  # integers the schema alone would take 1.0 for
        number = _mapping(doc.get(where[0])).get(where[1]) if len(where) == 2 else doc.get(where[0])
        if isinstance(number, float) and number.is_integer():
            check.error(where, _float_message(number, "an integer"))
    options = _options(check, doc.get("vmailmgr"), ("vmailmgr",), is_global=True)
    qmail_root = _qmail_root(check, qmail, options)
    if isinstance(qmail.get("root"), str) and qmail_root.startswith("/"):
        # qmail.root is where plan reads and apply writes the control files; written to
        # /etc/vmailmgr/qmail-root too, so the runtime programs and VMailMgr's tools agree
        options.setdefault("qmail-root", qmail_root)
    bindir = runtime.get("bindir", "/usr/local/bin")
    if isinstance(bindir, str) and not bindir.startswith("/"):
        check.error(("runtime", "bindir"), f"{bindir!r} is not an absolute path")
    elif isinstance(bindir, str) and not _BINDIR.match(bindir):
        check.error(
            ("runtime", "bindir"),
            f"{bindir!r} may hold only letters, digits and / . _ - + , : = @ %: qmail runs "
            "'|<bindir>/vdeliver' through /bin/sh, so a space, quote, $, ; or other shell character "
            "would change the command",
        )
    reload_command = qmail.get("reload")
    if isinstance(reload_command, str) and not reload_command.strip():
        check.error(("qmail", "reload"), "an empty reload command; omit it or write null")
    domains = _domains(check, doc.get("domains"), options)
    _check_loops(check)
    _check_hashes(check)
    spec = Spec(
        domains=tuple(domains),
        options=options,
        qmail_root=qmail_root,
        reload_command=reload_command if isinstance(reload_command, str) and reload_command.strip() else None,
        bindir=bindir if isinstance(bindir, str) else "/usr/local/bin",
        password_scheme=_str(passwords.get("scheme"), "yescrypt"),
        sources=sources,
        history_keep=_history_keep(_mapping(doc.get("history"))),
        size_spellings=check.size_spellings,
    )
    has_errors = any(d.severity == "error" for d in check.diagnostics)
    return (None if has_errors else spec), check.diagnostics


def _history_keep(history: Mapping[str, object]) -> int:
    """``history.keep`` (the schema checks it is an integer from 1 to `HISTORY_KEEP_MAX`), else
    the default."""
    keep = history.get("keep")
    usable = isinstance(keep, int) and not isinstance(keep, bool) and 1 <= keep <= HISTORY_KEEP_MAX
    return keep if usable else HISTORY_KEEP_DEFAULT  # type: ignore[return-value]


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def _str(value: object, default: str) -> str:
    return value if isinstance(value, str) else default


def _qmail_root(check: _Checker, qmail: Mapping[str, object], options: Mapping[str, OptionValue]) -> str:
    root = qmail.get("root")
    option = options.get("qmail-root")
    if isinstance(root, str) and not root.startswith("/"):
        check.error(("qmail", "root"), f"{root!r} is not an absolute path")
    if isinstance(root, str) and isinstance(option, str) and root.rstrip("/") != option.rstrip("/"):
        check.error(
            ("vmailmgr", "qmail-root"), f"qmail-root {option!r} disagrees with qmail.root {root!r}; write one of them"
        )
    if isinstance(root, str):
        return root
    if isinstance(option, str) and option:
        return option.rstrip("/") or "/"
    return "/var/qmail"


def _options(check: _Checker, value: object, path: tuple[PathPart, ...], is_global: bool) -> dict[str, OptionValue]:
    """Option values as their files will hold them (the first line, or list items)."""
    out: dict[str, OptionValue] = {}
    if not isinstance(value, dict):
        return out
    for name, raw in value.items():
        option = OPTIONS.get(name)
        here = path + (name,)
        if option is None:
            continue  # the schema reports unknown options
        if not is_global and name in GLOBAL_ONLY_OPTIONS:
            check.warn(
                here,
                f"{name!r} is read from /etc/vmailmgr only (before the switch to the domain's "
                "config); a per-domain value has no effect",
                at_key=True,
            )
        if option.kind == LIST:
            if isinstance(raw, list):
                items = []
                for index, item in enumerate(raw):
                    if isinstance(item, str):
                        if item != item.strip() or item.startswith("#"):
                            check.error(
                                here + (index,),
                                f"{item!r} cannot be an item of a list option "
                                "(no surrounding spaces, newlines or leading '#')",
                            )
                        items.append(item)
                out[name] = tuple(items)
        elif option.kind == UNSIGNED:
            if isinstance(raw, float) and raw.is_integer():
                check.error(here, _float_message(raw))
            elif isinstance(raw, (int, str)) and not isinstance(raw, bool):
                try:
                    stored = units.parse_unsigned_option(raw, name)
                except units.UnitError as exc:
                    check.error(here, str(exc))
                else:
                    out[name] = stored
                    check.spelled(raw, int(stored) if stored.isdigit() else None)
        elif isinstance(raw, str):
            if not raw.strip():
                check.error(here, "an empty value means 'not set'; omit the option to use the default")
            elif raw != raw.strip():
                check.error(here, "an option value is one line without surrounding spaces")
            elif name == "password-file" and password_file_problem(raw):
                check.error(here, str(password_file_problem(raw)))
            else:
                out[name] = raw
        if name in out and (problem := option_problem(name, out[name])):
            check.error(here, problem)  # the same check plan's preflight runs on the host's files
            del out[name]
    return out


class _Forwards:
    """Forwarding edges between the entries the YAML defines, for the loop check (`loops`).

    Only forwards that can reach a managed domain are kept: a bare name, or ``name@domain``
    where ``domain`` is written somewhere under ``domains:``; the rest cannot loop back.
    """

    def __init__(self) -> None:
        #: Every domain name and domain alias written (lowercase), before any is checked.
        self.managed: set[str] = set()
        #: Routed name (a valid domain or domain alias) -> its domain; table keys per domain.
        self.routes: dict[str, str] = {}
        self.keys: dict[str, set[str]] = {}
        self.edges: dict[Node, list[tuple[Node, int]]] = {}
        #: Edge number -> (YAML path, what to call it in a message).
        self.places: list[tuple[tuple[PathPart, ...], str]] = []
        self.elsewhere: list[tuple[Node, str, str, int]] = []  # (source, target domain, key, number)
        #: Every ``add`` of each domain as (source, target), kept or not: a domain's part of the
        #: graph, which the loop check can be run on again with other domains (`cross_domain_problem`).
        self.calls: dict[str, list[tuple[str, str]]] = {}

    def add(self, domain: str, source: str, target: str, path: tuple[PathPart, ...], what: str) -> None:
        """The edge from entry ``source`` of ``domain`` to where ``target`` (as written) delivers."""
        self.calls.setdefault(domain, []).append((source, target))
        local, at, target_domain = target.partition("@")
        if at:
            target_domain = target_domain.lower()
            if target_domain not in self.managed:
                return  # elsewhere, or name@ (control/me is the host's own name): not followed
        number = len(self.places)
        self.places.append((path, what))
        key = ascii_lower(local)
        if at:
            self.elsewhere.append(((domain, source), target_domain, key, number))
        elif key in self.keys.get(domain, ()):
            self.edges.setdefault((domain, source), []).append(((domain, key), number))

    def resolved(self) -> dict[Node, list[tuple[Node, int]]]:
        """Every edge, ``name@domain`` ones resolved now that every domain's keys are known."""
        for source, target_domain, key, number in self.elsewhere:
            owner = self.routes.get(target_domain)
            if owner is not None and key in self.keys.get(owner, ()):
                self.edges.setdefault(source, []).append(((owner, key), number))
        self.elsewhere = []
        return self.edges


class _Names:
    """Table keys of one domain: who claimed each key first (users, aliases, catch-all)."""

    def __init__(self, check: _Checker, longest_domain: str) -> None:
        self.check = check
        self.keys: dict[str, tuple[str, str, tuple[PathPart, ...]]] = {}
        #: The domain's longest name (its own or an alias): every name must fit an address with it.
        self.longest_domain = longest_domain

    def claim(self, name: str, label: str, path: tuple[PathPart, ...], at_key: bool = True) -> bool:
        """Record ``name`` (described as ``label``); False and an error if invalid or taken."""
        if not name or _NAME_BAD_CHARS.search(name):
            problem = name_problem(name)
        else:
            problem = _length_problem(name) if len(name) > MAX_LOCAL_PART // 4 else None
        if problem is None and len(name) + 1 + len(self.longest_domain) > MAX_ADDRESS:
            address = _octets(name) + 1 + len(self.longest_domain)
            if address > MAX_ADDRESS:
                problem = (
                    f"{name}@{self.longest_domain} would be {address} octets long, more than {MAX_ADDRESS} "
                    "(the SMTP limit of an address)"
                )
        if problem:
            self.check.error(path, f"invalid name {name!r}: {problem}", at_key=at_key)
            return False
        key = ascii_lower(name)
        first = self.keys.get(key)
        if first is not None:
            first_label, first_name, first_path = first
            same = "" if first_name == name else f" (names are case-insensitive: both are the key {key!r})"
            self.check.error(
                path,
                f"{label} collides with {first_label} at {self.check.where(first_path, True)}{same}",
                at_key=at_key,
            )
            return False
        self.keys[key] = (label, name, path)
        return True


def _domains(check: _Checker, value: object, global_options: Mapping[str, OptionValue]) -> list[DomainSpec]:
    if not isinstance(value, dict):
        return []
    out: list[DomainSpec] = []
    managed = check.forwards.managed  # every name mail can be forwarded to, before any is checked
    for name, body in value.items():
        managed.add(name.lower())
        more = body.get("domain_aliases") if isinstance(body, dict) else None
        if isinstance(more, list):
            managed.update(alias.lower() for alias in more if isinstance(alias, str))
    routed: dict[str, tuple[str, tuple[PathPart, ...]]] = {}  # virtualdomains key -> (domain, path)
    owners: dict[str, tuple[str, tuple[PathPart, ...]]] = {}  # base user -> (domain, path)
    for name, body in value.items():
        path: tuple[PathPart, ...] = ("domains", name)
        if not isinstance(body, dict):
            continue
        check.domain = name
        valid_name = _check_hostname(check, name, path, "domain name", at_key=True)
        base_user = body.get("base_user")
        if isinstance(base_user, str):
            if not _BASE_USER.match(base_user):
                check.error(path + ("base_user",), f"{base_user!r} is not a valid system user name")
            elif base_user in owners:
                other, other_path = owners[base_user]
                check.error(
                    path + ("base_user",),
                    f"base user {base_user!r} already owns domain {other!r} at {check.where(other_path)}; "
                    "one base user has one table: list more names under domain_aliases",
                )
            else:
                owners[base_user] = (name, path)
        wildcard = body.get("wildcard") is True
        aliases = (
            [a for a in body.get("domain_aliases") or () if isinstance(a, str)]
            if isinstance(body.get("domain_aliases"), list)
            else []
        )
        if wildcard and valid_name and "." not in name:
            check.error(
                path + ("wildcard",),
                f"a wildcard on the single-label name {name!r} would route every name under '.{name}' "
                "to this base user; only a name with a dot can have a wildcard",
            )
        keys = [(name, path, True)] + ([("." + name, path + ("wildcard",), False)] if wildcard else [])
        keys = keys if valid_name else []
        for index, alias in enumerate(aliases):
            if _check_hostname(check, alias, path + ("domain_aliases", index), "domain alias"):
                keys.append((alias, path + ("domain_aliases", index), False))
        for key, key_path, at_key in keys:
            previous = routed.get(key)
            if previous is not None and previous[0] != name:
                check.error(
                    key_path,
                    f"{key!r} is already routed to domain {previous[0]!r} at "
                    f"{check.where(previous[1])}: a name can belong to one base user only",
                    at_key=at_key,
                )
            elif previous is not None:
                check.error(key_path, f"{key!r} is listed twice for this domain", at_key=at_key)
            else:
                routed[key] = (name, key_path)
                if not key.startswith("."):
                    check.forwards.routes[key] = name
        domain_options = _options(check, body.get("options"), path + ("options",), is_global=False)
        out.append(_domain(check, name, body, path, base_user, wildcard, aliases, domain_options, global_options))
    check.domain = None
    return out


def _check_hostname(check: _Checker, name: str, path: tuple[PathPart, ...], what: str, at_key: bool = False) -> bool:
    """True when ``name`` can be a virtualdomains/rcpthosts key; reports why not otherwise."""
    if name != name.lower() and _HOSTNAME.match(name.lower()):
        check.error(
            path,
            f"{what} {name!r} must be written in lowercase ({name.lower()!r}): qmail's control "
            "files compare lowercase names",
            at_key=at_key,
        )
        return False
    if not _HOSTNAME.match(name):
        hint = " (use wildcard: true for '.domain')" if name.startswith(".") else ""
        check.error(path, f"{what} {name!r} is not a valid host name{hint}", at_key=at_key)
        return False
    problem = _domain_length_problem(name)
    if problem:
        check.error(path, f"{what} {name!r} {problem}", at_key=at_key)
        return False
    return True


def _domain_length_problem(name: str) -> str | None:
    """Why a domain name is too long for DNS (and SMTP), or None."""
    if len(name) > MAX_DOMAIN:
        return f"is {len(name)} characters long, more than {MAX_DOMAIN} (the DNS limit)"
    longest = max(name.split("."), key=len)
    if len(longest) > MAX_LABEL:
        return f"has a label of {len(longest)} characters, more than {MAX_LABEL} (the DNS limit)"
    return None


def _octets(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))


def _length_problem(name: str) -> str | None:
    """Why ``name`` is too long to be the part of an address before '@', or None."""
    if _octets(name) > MAX_LOCAL_PART:
        return f"{_octets(name)} octets long, more than {MAX_LOCAL_PART} (the SMTP limit of the part before '@')"
    return None


def _float_message(value: float, expected: str = "an integer or a string") -> str:
    """A whole number written with a point (100.0) where an integer is meant: never dropped."""
    return f"expected {expected}, found the number {value!r} (write {int(value)})"


def _domain(
    check: _Checker,
    name: str,
    body: Mapping[str, object],
    path: tuple[PathPart, ...],
    base_user: object,
    wildcard: bool,
    aliases: list[str],
    domain_options: Mapping[str, OptionValue],
    global_options: Mapping[str, OptionValue],
) -> DomainSpec:
    names = _Names(check, max([name, *aliases], key=len))
    users_map = body.get("users")
    aliases_map = body.get("aliases")
    entries: list[UserSpec] = []
    forward_checks: list[tuple[tuple[PathPart, ...], str, str]] = []  # (path, forward, source key)
    alias_edges: list[tuple[tuple[PathPart, ...], str, str]] = []  # a user's alias -> the user

    if isinstance(users_map, dict):
        for uname, ubody in users_map.items():
            upath = path + ("users", uname)
            if ubody is not None and not isinstance(ubody, dict):
                continue
            ubody = ubody or {}
            names.claim(uname, f"user {uname!r}", upath)
            user_aliases = []
            raw_aliases = ubody.get("aliases")
            if isinstance(raw_aliases, list):
                for index, alias in enumerate(raw_aliases):
                    if isinstance(alias, str) and names.claim(
                        alias, f"alias {alias!r} of user {uname!r}", upath + ("aliases", index), at_key=False
                    ):
                        user_aliases.append(alias)
                        alias_edges.append((upath + ("aliases", index), alias, uname))
            entries.append(_entry(check, uname, "user", ubody, upath, users_map, forward_checks, tuple(user_aliases)))
    if isinstance(aliases_map, dict):
        for aname, abody in aliases_map.items():
            apath = path + ("aliases", aname)
            if isinstance(abody, str):
                abody = {"forwards": [abody]}
                fpaths = {0: apath}
            elif isinstance(abody, list):
                fpaths = {i: apath + (i,) for i in range(len(abody))}
                abody = {"forwards": abody}
            elif isinstance(abody, dict):
                fpaths = None
            else:
                continue
            names.claim(aname, f"alias {aname!r}", apath)
            entry = _entry(check, aname, "alias", abody, apath, aliases_map, forward_checks, (), fpaths)
            if entry.forwards == () and entry.has_mailbox is not True:
                check.warn(
                    apath,
                    f"alias {aname!r} has no forwards and no mailbox: VMailMgr drops its mail silently",
                    at_key=True,
                )
            entries.append(entry)

    default_username = layered_value("default-username", domain_options, global_options)
    postmaster = layered_value("postmaster-aliases", domain_options, global_options)
    catch_all: str | None | object = UNSET
    if "catch_all" in body:
        target = body.get("catch_all")
        if target is None:
            catch_all = None
        elif isinstance(target, str):
            catch_all = target
            assert isinstance(default_username, str)
            names.claim(
                default_username, f"the catch-all entry {default_username!r} (default-username)", path + ("catch_all",)
            )
            forward_checks.append((path + ("catch_all",), target, ascii_lower(default_username)))
            _check_catch_all_target(check, target, entries, path + ("catch_all",))

    assert isinstance(postmaster, tuple)
    local = set(names.keys) | {ascii_lower(a) for a in postmaster}
    check.forwards.keys[name] = set(names.keys)
    for apath, alias, uname in alias_edges:
        check.forwards.add(name, ascii_lower(alias), uname, apath, f"alias {alias!r} of user {uname!r}")
    for fpath, forward, source in forward_checks:
        what = "catch_all" if fpath[-1] == "catch_all" else "forward"
        problem = forward_problem(forward, local)
        if problem:
            check.error(fpath, f"{what} {forward!r} {problem}".replace("{domain}", name))
        else:
            check.forwards.add(name, source, forward, fpath, f"{what} {forward!r}")

    return DomainSpec(
        name=name,
        base_user=base_user if isinstance(base_user, str) else "",
        wildcard=wildcard,
        domain_aliases=tuple(aliases),
        options=dict(domain_options),
        prune=body.get("prune") is True,
        catch_all=catch_all,  # type: ignore[arg-type]
        users=tuple(entries),
        rcpthosts_file=_rcpthosts_file(body.get("rcpthosts_file")),
        position=locate(check.doc, path, at_key=True),
        system_account=body.get("system_account") is True,
    )


def _rcpthosts_file(value: object) -> Literal["rcpthosts", "morercpthosts"]:
    """The host file a domain asks for (the schema reports other values; the default is the first)."""
    return value if value in RCPTHOSTS_FILES else RCPTHOSTS_FILES[0]  # type: ignore[return-value]


def forward_problem(forward: str, local_keys: set[str]) -> str | None:
    """Why ``forward`` is not deliverable as VMailMgr reads it, or None ([compat: fields])."""
    if not forward:
        return "is empty"
    if _BAD_ADDRESS_CHARS.search(forward):
        return "contains spaces, control characters or punctuation an address cannot have"
    at = forward.count("@")
    if at > 1:
        return "contains more than one '@'"
    if at == 1:
        local, domain = forward.split("@")
        if not local:
            return "has nothing before the '@'"
        if domain and (domain.startswith(".") or domain.endswith(".") or ".." in domain):
            return f"has an invalid domain {domain!r}"
        if len(local) > MAX_LOCAL_PART // 4 and _octets(local) > MAX_LOCAL_PART:
            return f"has {_octets(local)} octets before the '@', more than {MAX_LOCAL_PART} (the SMTP limit)"
        if domain and _domain_length_problem(domain):
            return f"has a domain that {_domain_length_problem(domain)}"
        if len(forward) > MAX_ADDRESS // 4 and _octets(forward) > MAX_ADDRESS:
            return f"is {_octets(forward)} octets long, more than {MAX_ADDRESS} (the SMTP limit of an address)"
        return None
    if ascii_lower(forward) in local_keys:
        return None
    return (
        "is neither a user or alias of {domain} nor an address (write user@example.org, or 'name@' for "
        "name@ + control/me)"
    )


def _entry(
    check: _Checker,
    name: str,
    kind: str,
    body: Mapping[str, object],
    path: tuple[PathPart, ...],
    parent: Mapping[str, object],
    forward_checks: list[tuple[tuple[PathPart, ...], str, str]],
    aliases: tuple[str, ...] = (),
    forward_paths: dict[int, tuple[PathPart, ...]] | None = None,
) -> UserSpec:
    """One table entry. Loops over the keys present (usually a few), not over every field."""
    fields: dict[str, object] = {}
    for field, value in body.items():
        unit = _FIELD_UNITS.get(field)
        if unit is None:
            continue  # "aliases" (read by the caller) or a key the schema reports
        if unit in units.PARSERS:
            if isinstance(value, float) and value.is_integer():
                check.error(path + (field,), _float_message(value))  # the schema takes 100.0 for an integer
                continue
            wrong_type = not isinstance(value, (int, str)) or isinstance(value, bool)
            if wrong_type and (value is not None or unit != "expiry"):
                continue  # the schema reports wrong types
            parsed = _parse_cached(check, field, unit, value, path)
            if parsed is not _FAILED:
                fields[field] = parsed
        elif unit == "hash":
            password = _password(check, value, path + (field,))
            if password is not None:
                fields[field] = password
        elif unit == "addresses":
            if isinstance(value, list):
                good = []
                for index, forward in enumerate(value):
                    if isinstance(forward, str):
                        fpath = forward_paths[index] if forward_paths else path + (field, index)
                        forward_checks.append((fpath, forward, ascii_lower(name)))
                        good.append(forward)
                fields[field] = tuple(good)
        elif unit == "text":
            if isinstance(value, str):  # the reader refused control characters (NUL, CR, LF ...)
                fields[field] = value
        elif unit == "flag" and isinstance(value, bool):
            fields[field] = value
    if "has_mailbox" in fields and fields["has_mailbox"] is True and fields.get("directory") == "":
        check.error(path + ("has_mailbox",), "an entry with an empty directory cannot have a mailbox")
    if "soft_quota" in fields and "hard_quota" in fields:
        soft, hard = fields["soft_quota"], fields["hard_quota"]
        if isinstance(soft, int) and isinstance(hard, int) and soft > hard:
            check.warn(path + ("soft_quota",), f"soft quota {soft} is above the hard quota {hard}")
    record_problem = _record_size_problem(name, fields)
    if record_problem is not None:
        check.error(path, record_problem, at_key=True)
    mark = parent.keymarks.get(name) if isinstance(parent, YMap) else None
    position = (
        Position(parent.file_of(name), mark.line + 1, mark.column + 1)
        if mark is not None and isinstance(parent, YMap)
        else None
    )
    return UserSpec(name=name, kind=kind, aliases=aliases, position=position, **fields)  # type: ignore[arg-type]


def _record_size_problem(name: str, fields: Mapping[str, object]) -> str | None:
    """Why the entry's table record would be larger than the readers take (`MAX_RECORD_SIZE`),
    or None: apply must never write a record that every login and delivery then refuses."""
    password = fields.get("password")
    forwards = fields.get("forwards")
    forwards = forwards if isinstance(forwards, tuple) else ()
    texts = [
        name,
        *forwards,
        str(fields.get("personal") or ""),
        str(fields.get("directory") or ""),
        (password.value or "") if isinstance(password, PasswordSpec) and password.kind == "hash" else "",
    ]
    if 4 * sum(len(text) + 1 for text in texts) + RECORD_ALLOWANCE <= MAX_RECORD_SIZE:  # the usual case
        return None
    size = sum(_octets(text) + 1 for text in texts) + RECORD_ALLOWANCE
    if size <= MAX_RECORD_SIZE:
        return None
    return (
        f"its table record would hold about {size:,} bytes ({len(forwards)} forwards), more than the {MAX_RECORD_SIZE:,} "
        "one record may have: the login and delivery programs refuse such a record (a list this long belongs "
        "in a mailing-list manager)"
    )


_FAILED = object()
_parse_memo: dict[tuple[str, object, type], object] = {}


def _parse_cached(check: _Checker, field: str, unit: str, value: object, path: tuple[PathPart, ...]) -> object:
    """Parse a size/count/time; the same text (``1 GiB`` on 30,000 users) is parsed once."""
    key = (field, value, type(value))
    if key in _parse_memo:
        parsed = _parse_memo[key]
        if unit == "size":
            check.spelled(value, parsed)
        return parsed
    try:
        parsed = units.PARSERS[unit](value, _LABELS[field])
    except units.UnitError as exc:
        check.error(path + (field,), str(exc))
        return _FAILED
    if len(_parse_memo) < 10_000:
        _parse_memo[key] = parsed
    if unit == "size":
        check.spelled(value, parsed)
    return parsed


def _password(check: _Checker, value: object, path: tuple[PathPart, ...]) -> PasswordSpec | None:
    if value is None:
        return PasswordSpec("none")
    if isinstance(value, dict):
        if len(value) != 1:
            return None  # the schema reports it
        ((kind, ref),) = value.items()
        if not isinstance(ref, str) or not ref or kind not in ("env", "file"):
            return None
        if kind == "env":
            if not _ENV_NAME.match(ref):
                check.error(path + ("env",), f"{ref!r} is not an environment variable name")
                return None
            return PasswordSpec("env", ref)
        # Absolute from here on: relative to the file it is written in, wherever plan runs.
        base = Path(value.file).parent if isinstance(value, YMap) else Path(".")
        return PasswordSpec("file", os.path.abspath(base / ref))
    if not isinstance(value, str):
        return None
    if value == "unmanaged":
        return PasswordSpec("unmanaged")
    if value == "":
        check.error(path, "an empty password cannot be stored; write null for no login")
        return None
    if value == "*" or value.startswith("!"):
        return PasswordSpec("hash", value)
    if value.startswith("$0$"):
        check.warn(
            path,
            "'$0$' is VMailMgr's null crypt: the plaintext password is stored in the table; "
            "replace it with {env:}, {file:} or a real hash",
        )
        return PasswordSpec("hash", value)
    if value.startswith("$") or _CRYPT_HASH.match(value):
        check.hashes.append((path, value))  # libxcrypt decides, for all of them at once (`_check_hashes`)
        return PasswordSpec("hash", value)
    if scheme_of(value) == "old-md5" and looks_like_hash(value):  # VMailMgr's own, checked without libxcrypt
        check.warn(
            path,
            "'3' + 32 hex digits is VMailMgr's old unsalted MD5: the password can be looked up from "
            "the hash; replace it with {env:}, {file:} or a real hash",
        )
        return PasswordSpec("hash", value)
    check.error(
        path,
        "plaintext passwords are not allowed in the configuration: use a crypt hash, "
        "{env: VARIABLE}, {file: PATH}, null (no login) or unmanaged",
    )
    return None


def _check_hashes(check: _Checker) -> None:
    """Every password that may be a crypt hash, asked of libxcrypt (`hashcheck`) in one batch."""
    if not check.hashes:
        return
    problems, warning = unusable_hashes(value for _, value in check.hashes)
    if warning:
        check.warn(check.hashes[0][0], warning)
    if problems:
        for path, value in check.hashes:
            if value in problems:
                check.error(path, problems[value])


def _check_loops(check: _Checker) -> None:
    """Forwarding loops among the entries the YAML defines, across domains too (`loops`)."""
    for loop in find_loops(check.forwards.resolved()):
        (domain, _), _, number = loop[0]
        path, what = check.forwards.places[number]
        if len(loop) == 1 and path[-1] == "catch_all":
            check.error(path, f"{what} is the catch-all entry itself: mail for unknown names would loop forever")
        else:
            check.error(path, f"{what} makes a mail loop: {describe(loop, domain)}")


def _check_catch_all_target(check: _Checker, target: str, entries: list[UserSpec], path: tuple[PathPart, ...]) -> None:
    """A catch-all whose target is an alias with no forwards and no mailbox drops every message."""
    key = ascii_lower(target)
    for entry in entries:
        if ascii_lower(entry.name) == key and entry.kind == "alias":
            if entry.forwards == () and entry.has_mailbox is not True:
                check.error(
                    path,
                    f"catch_all {target!r} leads nowhere: {entry.name!r} has no mailbox and no forwards, "
                    "so mail for unknown names would be dropped",
                )
            return


def summary(spec: Spec) -> str:
    """``3 domains, 120 users, 14 aliases`` for ``validate``'s one line."""
    users = sum(1 for d in spec.domains for u in d.users if u.kind == "user")
    aliases = sum(1 for d in spec.domains for u in d.users if u.kind == "alias")
    aliases += sum(len(u.aliases) for d in spec.domains for u in d.users)
    return f"{_plural(len(spec.domains), 'domain')}, {_plural(users, 'user')}, {_plural(aliases, 'alias')}"


def _plural(count: int, word: str) -> str:
    if count == 1:
        return f"1 {word}"
    return f"{count} {word}es" if word.endswith("s") else f"{count} {word}s"
