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
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from ..formats.config import LIST, OPTIONS, UNSIGNED, layered_value
from ..formats.control import RCPTHOSTS_FILES
from ..formats.hashing import looks_like_hash
from ..formats.vpwentry import name_problem
from ..model import USER_FIELD_TABLE, OptionValue, ascii_lower
from ..tables import password_file_problem
from . import units
from .errors import Diagnostic, PathPart
from .positions import locate
from .spec import UNSET, DomainSpec, PasswordSpec, Position, Spec, UserSpec
from .yamlread import YMap

_HOST_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^{_HOST_LABEL}(?:\.{_HOST_LABEL})*$")
_BASE_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")
#: The characters `name_problem` refuses (all ASCII, so the str check equals the byte check).
_NAME_BAD_CHARS = re.compile(r"[/:\n\r\t \x00]")
#: yescrypt, SHA-512/256, MD5 and bcrypt crypt strings: what `looks_like_hash` accepts, decided fast.
_COMMON_HASH = re.compile(r"\$(?:y|6|5|1|2[aby])\$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BAD_ADDRESS_CHARS = re.compile(r"[\s\x00-\x1f\x7f,<>()\[\]\\\"]")
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

    def error(self, path: tuple[PathPart, ...], message: str, at_key: bool = False) -> None:
        self.diagnostics.append(Diagnostic(locate(self.doc, path, at_key), path, message))

    def warn(self, path: tuple[PathPart, ...], message: str, at_key: bool = False) -> None:
        self.diagnostics.append(Diagnostic(locate(self.doc, path, at_key), path, message, "warning"))

    def where(self, path: tuple[PathPart, ...], at_key: bool = True) -> str:
        pos = locate(self.doc, path, at_key)
        return str(pos) if pos else "(unknown place)"


def build_spec(doc: object, sources: tuple[str, ...] = ()) -> tuple[Spec | None, list[Diagnostic]]:
    """The `Spec` of a merged document and every diagnostic (the Spec is None on errors)."""
    check = _Checker(doc)
    if not isinstance(doc, dict):  # the schema reports anything but a mapping
        return (Spec(sources=sources) if doc is None else None), check.diagnostics
    qmail = _mapping(doc.get("qmail"))
    runtime = _mapping(doc.get("runtime"))
    passwords = _mapping(doc.get("passwords"))
    options = _options(check, doc.get("vmailmgr"), ("vmailmgr",), is_global=True)
    qmail_root = _qmail_root(check, qmail, options)
    if isinstance(qmail.get("root"), str) and qmail_root.startswith("/"):
        # qmail.root is where plan reads and apply writes the control files; written to
        # /etc/vmailmgr/qmail-root too, so the runtime programs and VMailMgr's tools agree
        options.setdefault("qmail-root", qmail_root)
    bindir = runtime.get("bindir", "/usr/local/bin")
    if isinstance(bindir, str) and not bindir.startswith("/"):
        check.error(("runtime", "bindir"), f"{bindir!r} is not an absolute path")
    reload_command = qmail.get("reload")
    if isinstance(reload_command, str) and not reload_command.strip():
        check.error(("qmail", "reload"), "an empty reload command; omit it or write null")
    domains = _domains(check, doc.get("domains"), options)
    spec = Spec(
        domains=tuple(domains),
        options=options,
        qmail_root=qmail_root,
        reload_command=reload_command if isinstance(reload_command, str) and reload_command.strip() else None,
        bindir=bindir if isinstance(bindir, str) else "/usr/local/bin",
        password_scheme=_str(passwords.get("scheme"), "yescrypt"),
        sources=sources,
    )
    has_errors = any(d.severity == "error" for d in check.diagnostics)
    return (None if has_errors else spec), check.diagnostics


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
            continue
        if option.kind == UNSIGNED:
            if isinstance(raw, (int, str)) and not isinstance(raw, bool):
                try:
                    out[name] = units.parse_unsigned_option(raw, name)
                except units.UnitError as exc:
                    check.error(here, str(exc))
            continue
        if isinstance(raw, str):
            if not raw.strip():
                check.error(here, "an empty value means 'not set'; omit the option to use the default")
            elif raw != raw.strip():
                check.error(here, "an option value is one line without surrounding spaces")
            elif name == "password-file" and password_file_problem(raw):
                check.error(here, str(password_file_problem(raw)))
            else:
                out[name] = raw
    return out


class _Names:
    """Table keys of one domain: who claimed each key first (users, aliases, catch-all)."""

    def __init__(self, check: _Checker) -> None:
        self.check = check
        self.keys: dict[str, tuple[str, str, tuple[PathPart, ...]]] = {}

    def claim(self, name: str, label: str, path: tuple[PathPart, ...], at_key: bool = True) -> bool:
        """Record ``name`` (described as ``label``); False and an error if invalid or taken."""
        problem = name_problem(name) if not name or _NAME_BAD_CHARS.search(name) else None
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
    routed: dict[str, tuple[str, tuple[PathPart, ...]]] = {}  # virtualdomains key -> (domain, path)
    owners: dict[str, tuple[str, tuple[PathPart, ...]]] = {}  # base user -> (domain, path)
    for name, body in value.items():
        path: tuple[PathPart, ...] = ("domains", name)
        if not isinstance(body, dict):
            continue
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
        domain_options = _options(check, body.get("options"), path + ("options",), is_global=False)
        out.append(_domain(check, name, body, path, base_user, wildcard, aliases, domain_options, global_options))
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
    if not _HOSTNAME.match(name) or len(name) > 253:
        hint = " (use wildcard: true for '.domain')" if name.startswith(".") else ""
        check.error(path, f"{what} {name!r} is not a valid host name{hint}", at_key=at_key)
        return False
    return True


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
    names = _Names(check)
    users_map = body.get("users")
    aliases_map = body.get("aliases")
    entries: list[UserSpec] = []
    forward_checks: list[tuple[tuple[PathPart, ...], str]] = []

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
            forward_checks.append((path + ("catch_all",), target))

    assert isinstance(postmaster, tuple)
    local = set(names.keys) | {ascii_lower(a) for a in postmaster}
    for fpath, forward in forward_checks:
        problem = forward_problem(forward, local)
        if problem:
            what = "catch_all" if fpath[-1] == "catch_all" else "forward"
            check.error(fpath, f"{what} {forward!r} {problem}".replace("{domain}", name))

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
    forward_checks: list[tuple[tuple[PathPart, ...], str]],
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
            if isinstance(value, (dict, list, float, bool)) or (value is None and unit != "expiry"):
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
                        forward_checks.append((fpath, forward))
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
    mark = parent.keymarks.get(name) if isinstance(parent, YMap) else None
    position = (
        Position(parent.file_of(name), mark.line + 1, mark.column + 1)
        if mark is not None and isinstance(parent, YMap)
        else None
    )
    return UserSpec(name=name, kind=kind, aliases=aliases, position=position, **fields)  # type: ignore[arg-type]


_FAILED = object()
_parse_memo: dict[tuple[str, object, type], object] = {}


def _parse_cached(check: _Checker, field: str, unit: str, value: object, path: tuple[PathPart, ...]) -> object:
    """Parse a size/count/time; the same text (``1 GiB`` on 30,000 users) is parsed once."""
    key = (field, value, type(value))
    if key in _parse_memo:
        return _parse_memo[key]
    try:
        parsed = units.PARSERS[unit](value, _LABELS[field])
    except units.UnitError as exc:
        check.error(path + (field,), str(exc))
        return _FAILED
    if len(_parse_memo) < 10_000:
        _parse_memo[key] = parsed
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
    if _COMMON_HASH.match(value) or value == "*" or value.startswith("!"):
        return PasswordSpec("hash", value)
    if value.startswith("$0$"):
        check.warn(
            path,
            "'$0$' is VMailMgr's null crypt: the plaintext password is stored in the table; "
            "replace it with {env:}, {file:} or a real hash",
        )
        return PasswordSpec("hash", value)
    if looks_like_hash(value):
        return PasswordSpec("hash", value)
    check.error(
        path,
        "plaintext passwords are not allowed in the configuration: use a crypt hash, "
        "{env: VARIABLE}, {file: PATH}, null (no login) or unmanaged",
    )
    return None


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
