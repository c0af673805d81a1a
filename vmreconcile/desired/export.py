"""The live model as configuration YAML: adopting an existing VMailMgr install (pure).

Every live entry is described exactly: a field is written when it differs from what the
planner would give a *new* entry (VMailMgr's defaults, ``newentry.py``), and ``created`` always, so
the file rebuilds the same table on an empty host and changes nothing on the host it came
from. Entries with a mailbox go under ``users:``, the rest under ``aliases:``; table order is
kept within each section. Stored hashes are written as they are (``$0$`` ones too; validate
warns about them), except for the users listed in the authpipe's
``vmreconcile-passwd-changeable``, whose password is written ``unmanaged``. The typed spelling
of a name is recovered from its directory when it is unambiguous (key ``henry.ford`` with
``./users/Henry:Ford`` is written ``Henry.Ford``).

What YAML cannot say is *lost*, and each lost part is named in the notes: a ``.qmail-default``
other than ``|<bindir>/vdeliver``, bytes that are not UTF-8 (such an entry, option or field is
left out of the YAML, so the plan leaves it as it is live), authpipe lines naming no exported
entry. ``cli/export.py`` refuses a lossy export unless ``--lossy``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import yaml

from ..formats import control as ctl
from ..formats.config import LIST, OPTIONS, PASSWD_CHANGEABLE, UNSIGNED
from ..model import USER_FIELD_TABLE, Domain, HostState, OptionValue, VirtualUser, ascii_lower
from ..newentry import DomainDefaults, qmail_default_for, vadduser_extras
from ..printable import printable
from . import units

DEFAULT_BINDIR = "/usr/local/bin"


class ExportError(ValueError):
    """The export cannot be made (an unknown ``--domain``, a value YAML cannot hold)."""


class Lost(NamedTuple):
    """A part of the live host the YAML cannot carry: what it is, and the address of the plan
    change it causes when there is one (``mydomain.org`` for its ``.qmail-default``)."""

    text: str
    address: str | None = None


def export_document(
    state: HostState, domain: str | None = None, changeable: Iterable[str] | None = None
) -> tuple[dict[str, object], list[str]]:
    """The configuration mapping of ``state`` (one domain with ``domain``) and the lost parts.

    ``changeable`` is the live ``vmreconcile-passwd-changeable`` list (``base/key`` lines):
    those users' passwords are exported as ``unmanaged``. The notes name everything the YAML
    cannot carry and what applying it would therefore change (none: the export is exact).
    """
    doc, lost = export_with_losses(state, domain, changeable)
    return doc, [item.text for item in lost]


def unknown_domain(domain: str, known: list[str]) -> ExportError:
    """The error for ``export --domain`` of a domain the host does not have."""
    return ExportError(f"no live domain {domain!r} (known: {', '.join(known) or 'none'})")


def export_with_losses(
    state: HostState, domain: str | None = None, changeable: Iterable[str] | None = None
) -> tuple[dict[str, object], list[Lost]]:
    """`export_document` with each lost part's plan address (`Lost`)."""
    notes: list[Lost] = []
    domains = [d for d in state.domains if domain is None or d.name == domain]
    if domain is not None and not domains:
        raise unknown_domain(domain, [d.name for d in state.domains])
    unmanaged = frozenset(changeable or ())
    doc: dict[str, object] = {}
    qmail_root = state.options.get("qmail-root")
    if isinstance(qmail_root, str) and not _not_utf8(qmail_root):  # without it the default /var/qmail applies
        doc["qmail"] = {"root": qmail_root.rstrip("/") or "/"}
    exportable = []
    for live in domains:
        problem = _not_utf8(live.name) or _not_utf8(live.base_user) or _not_utf8(live.domain_aliases)
        if problem:
            notes.append(Lost(f"domain {problem}: a name that is not UTF-8; left out (plan leaves the domain alone)"))
        else:
            exportable.append(live)
    bindir = _bindir(exportable, notes)
    doc["runtime"] = {"bindir": bindir}
    if state.options:
        doc["vmailmgr"] = _options(state.options, "vmailmgr", notes)
    doc["domains"] = {d.name: _domain(d, state, unmanaged, notes) for d in exportable}
    if domain is None:  # with --domain the plan leaves the authpipe list alone
        exported = {f"{d.base_user}/{u.name}" for d in exportable for u in d.users}
        for line in changeable or ():
            if line not in exported:
                notes.append(
                    Lost(
                        f"{PASSWD_CHANGEABLE} lists {line!r}, which is no entry of an exported domain; "
                        "applying drops the line",
                        f"option/{PASSWD_CHANGEABLE}",
                    )
                )
    return doc, notes


def _not_utf8(value: object) -> str | None:
    """The first string in ``value`` holding bytes that are not UTF-8, those bytes shown as
    ``\\xNN`` (``caf\\xe9``), else None."""
    if isinstance(value, str):
        return shown(value) if _has_surrogates(value) else None
    if isinstance(value, tuple | list):
        for item in value:
            found = _not_utf8(item)
            if found:
                return found
    return None


def shown(text: str) -> str:
    """``text`` fit for a terminal and for a one-line YAML comment: every line break, control
    character and byte that is not UTF-8 escaped (a tenant chooses its entries' names and fields,
    and a raw newline in a ``# lost:`` line would start a line of YAML)."""
    return printable(text)


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _bindir(domains: list[Domain], notes: list[Lost]) -> str:
    """The runtime bindir the live ``.qmail-default`` files point at (`|<bindir>/vdeliver`)."""
    found: dict[str, list[str]] = {}
    for domain in domains:
        content = domain.qmail_default
        match = re.fullmatch(r"\|(/[^\s]*)/vdeliver\n", content or "")
        if match and qmail_default_for(match.group(1)) == content and not _not_utf8(content):
            found.setdefault(match.group(1), []).append(domain.name)
        else:
            what = (
                "has no .qmail-default"
                if content is None
                else f"has a .qmail-default that is not '|<bindir>/vdeliver' ({content!r})"
            )
            notes.append(
                Lost(f"domain {domain.name} {what}; applying writes '|<runtime.bindir>/vdeliver'", domain.name)
            )
    if not found:
        return DEFAULT_BINDIR
    best = max(found, key=lambda b: len(found[b]))
    for other, names in found.items():
        if other != best:
            for name in names:
                notes.append(
                    Lost(f"domain {name} delivers through {other}/vdeliver; applying writes {best}/vdeliver", name)
                )
    return best


def _options(options: Mapping[str, OptionValue], where: str, notes: list[Lost]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in OPTIONS:  # VMailMgr's order
        if name not in options:
            continue
        value = options[name]
        if _not_utf8(value):
            notes.append(Lost(f"{where} option {name}: {_not_utf8(value)} is not UTF-8; left out (its file stays)"))
            continue
        kind = OPTIONS[name].kind
        if kind == LIST:
            out[name] = list(value) if isinstance(value, tuple) else [value]
        elif kind == UNSIGNED and isinstance(value, str) and value.isdigit() and str(int(value)) == value:
            out[name] = int(value)
        else:
            out[name] = value
    return out


def _rcpthosts_file(domain: Domain, control: Mapping[str, tuple[str, ...]]) -> str:
    """The first host file that lists the domain's name (the first one when none does)."""
    for name in ctl.RCPTHOSTS_FILES:
        if domain.name in ctl.host_lines(control.get(name, ())):
            return name
    return ctl.RCPTHOSTS_FILES[0]


def _domain(domain: Domain, state: HostState, unmanaged: frozenset[str], notes: list[Lost]) -> dict[str, object]:
    out: dict[str, object] = {"base_user": domain.base_user}
    if domain.wildcard:
        out["wildcard"] = True
    if domain.domain_aliases:
        out["domain_aliases"] = list(domain.domain_aliases)
    rcpthosts_file = _rcpthosts_file(domain, state.control)
    if rcpthosts_file != ctl.RCPTHOSTS_FILES[0]:
        out["rcpthosts_file"] = rcpthosts_file
    if domain.options:
        out["options"] = _options(domain.options, f"domain {domain.name}", notes)
    defaults = DomainDefaults(domain.options, state.options)
    clock = clock_fields(defaults)

    def is_unmanaged(user: VirtualUser) -> bool:
        return f"{domain.base_user}/{user.name}" in unmanaged

    # an alias in the user's `aliases: [...]` has no password of its own to leave unmanaged
    extras = {
        user: [a for a in names if not _not_utf8(a) and f"{domain.base_user}/{a}" not in unmanaged]
        for user, names in vadduser_extras(domain.users, defaults).items()
    }
    absorbed = {alias for names in extras.values() for alias in names}
    users: dict[str, object] = {}
    aliases: dict[str, object] = {}
    for user in domain.users:
        if user.name in absorbed:
            continue
        if _not_utf8(user.name):
            notes.append(
                Lost(
                    f"{domain.name}/{_not_utf8(user.name)}: a name that is not UTF-8; left out "
                    "(plan leaves the entry as it is, without prune)"
                )
            )
            continue
        kind = "user" if user.has_mailbox else "alias"
        name = typed_name(user, defaults)
        fields = entry_fields(user, kind, name, defaults, clock)
        for field, value in list(fields.items()):
            if _not_utf8(value):
                notes.append(
                    Lost(
                        f"{domain.name}/{name}: {field} {_not_utf8(value)} is not UTF-8; left out "
                        "(plan keeps the live value; a rebuilt entry would not have it)"
                    )
                )
                del fields[field]
        if is_unmanaged(user):  # the authpipe may change it: never compared, never written
            fields = {"password": "unmanaged", **{k: v for k, v in fields.items() if k != "password"}}
        if extras.get(user.name):  # right after the password, where `vadduser NAME ALIAS...` reads
            head = {"password": fields.pop("password")} if "password" in fields else {}
            fields = {**head, "aliases": extras[user.name], **fields}
        (users if kind == "user" else aliases)[name] = fields
    if users:
        out["users"] = users
    if aliases:
        out["aliases"] = aliases
    return out


def typed_name(user: VirtualUser, defaults: DomainDefaults) -> str:
    """The name as it was typed, when the directory shows it (``Henry:Ford`` -> ``Henry.Ford``)."""
    tail = user.directory.rstrip("/").rsplit("/", 1)[-1].replace(":", ".")
    if tail != user.name and ascii_lower(tail) == user.name:
        plain = defaults.userdir(tail)
        if user.directory in (plain, "./" + plain):
            return tail
    return user.name


#: The user fields a YAML entry carries, in the order export writes them.
_YAML_FIELDS = tuple(sorted((f for f in USER_FIELD_TABLE if f.yaml_rank), key=lambda f: f.yaml_rank))


def clock_fields(defaults: DomainDefaults) -> frozenset[str]:
    """Fields whose new-entry value depends on the second the entry is made (``created``, and
    ``expires`` under a ``default-expiry``): export always writes them, since resolve would
    give a rebuilt entry the time of the rebuild."""
    early, late = defaults.new_user("x", 0), defaults.new_user("x", 1)
    return frozenset(f.name for f in _YAML_FIELDS if getattr(early, f.name) != getattr(late, f.name))


def entry_fields(
    user: VirtualUser, kind: str, name: str, defaults: DomainDefaults, clock: frozenset[str] | None = None
) -> dict[str, object]:
    """The fields of ``user`` that differ from a new ``kind`` entry named ``name`` (the field
    table's export rule), plus the clock-dependent ones, each spelled as its unit reads back."""
    clock = clock_fields(defaults) if clock is None else clock
    fresh = defaults.new_of_kind(kind, name, user.created)
    out: dict[str, object] = {}
    for field in _YAML_FIELDS:
        value = getattr(user, field.name)
        if (
            value == getattr(fresh, field.name)
            and field.name not in clock
            and not (field.export == "alias" and kind == "alias")
        ):
            continue
        spell = units.FORMATS.get(field.unit)
        out[field.name] = spell(value) if spell is not None else list(value) if isinstance(value, tuple) else value
    return out


def export_yaml(state: HostState, domain: str | None = None, changeable: Iterable[str] | None = None) -> str:
    """The YAML text of `export_document`, with the lost parts as leading comments."""
    return export_text(*export_document(state, domain, changeable))


def export_text(doc: Mapping[str, object], notes: Iterable[str]) -> str:
    """An exported document as YAML, each lost part a leading ``# lost:`` comment."""
    header = [
        "# vmreconcile configuration exported from the live system.",
        "# Check it with `vmreconcile validate`; `vmreconcile plan` against the same host shows no change.",
    ]
    header += [f"# lost: {printable(note)}" for note in notes]
    return "\n".join(header) + "\n" + render_yaml(doc)


# --- a small emitter: block mappings, flow lists of scalars, every scalar quoted when needed ---

_PLAIN = re.compile(r"[A-Za-z0-9_./$+][A-Za-z0-9_./$+@:=~ -]*\Z")  # \Z: "$" would accept a trailing newline
_PLAIN_FLOW = re.compile(r"[A-Za-z0-9_./$+][A-Za-z0-9_./$+@=~-]*\Z")
_resolver = yaml.resolver.Resolver()
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def render_yaml(doc: Mapping[str, object]) -> str:
    lines: list[str] = []
    _emit_mapping(doc, 0, lines)
    return "\n".join(lines) + "\n"


def _emit_mapping(mapping: Mapping[str, object], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for key, value in mapping.items():
        label = pad + scalar(key) + ":"
        if isinstance(value, Mapping):
            if value:
                lines.append(label)
                _emit_mapping(value, indent + 2, lines)
            else:
                lines.append(label + " {}")
        elif isinstance(value, list):
            lines.append(f"{label} [{', '.join(scalar(v, flow=True) for v in value)}]")
        else:
            lines.append(f"{label} {scalar(value)}")


def scalar(value: object, flow: bool = False) -> str:
    """One scalar as YAML that reads back (through `yamlread`) as exactly ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise ExportError(f"cannot write {value!r} as YAML")
    if _has_surrogates(value):
        raise ExportError(f"{value!r} holds bytes that are not UTF-8; YAML cannot carry them")
    pattern = _PLAIN_FLOW if flow else _PLAIN
    if pattern.match(value) and not value.endswith((":", " ")) and ": " not in value and " #" not in value:
        tag = _resolver.resolve(yaml.ScalarNode, value, (True, False))
        if tag in ("tag:yaml.org,2002:str", _TIMESTAMP):
            return value
    return quoted(value)


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def quoted(text: str) -> str:
    """A YAML double-quoted scalar; characters YAML may not hold raw are escaped."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif (
            0x20 <= code <= 0x7E or 0xA0 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000
        ) and code not in (0x2028, 0x2029, 0xFEFF):
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}")
    return '"' + "".join(out) + '"'
