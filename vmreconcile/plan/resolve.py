"""Complete a `Spec` against the live state into the desired `HostState` (pure).

The YAML may omit fields and names passwords indirectly, so before two models can be diffed
the spec is *resolved*: every omitted (`UNSET`) field keeps the live value of an existing
entry, or takes the value VMailMgr's own tools would give a new one ([compat: fields],
[compat: entry-shapes], [compat: admin-tools]; ``newentry.py``). Everything here is a function of (spec, live, now, secrets): no clock, no files,
no environment. The only impurity is the random salt of a *fresh* hash, made only when a
secret does not match the live hash.

Table order is creation order with updates in place ([compat: table-files]): live entries keep their place,
new ones are appended in YAML order (for a domain that has no table yet, vsetup's postmaster
aliases come first, as they would on a host set up with ``vsetup`` then ``vadduser``). New
entries whose YAML gives an explicit ``created`` are ordered by it (stable, so ties and
entries without one keep YAML order), and an alias in the shape ``vadduser USER ALIAS`` gives
it goes right after USER: an exported table, whose ``users:`` and ``aliases:`` sections are
separate, is then rebuilt in VMailMgr's own order, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from ..desired.spec import UNSET, DomainSpec, PasswordSpec, Spec, UserSpec
from ..formats import control as ctl
from ..formats.config import layered_value
from ..formats.hashing import hash_password, verify_password
from ..model import Domain, HostState, OptionValue, VirtualUser, ascii_lower
from ..newentry import DomainDefaults, place_vadduser_extras, qmail_default_for
from ..showjson import UNVERIFIABLE_PREFIX, hash_digest, is_redacted

#: (kind, reference) -> the secret's plaintext, or None when it is not available; may raise
#: `SecretUnavailable` to say why.
SecretReader = Callable[[str, str], "str | None"]


class SecretUnavailable(Exception):
    """A secret that cannot be used; the message names the variable or file, never the value.

    ``missing``: it does not exist (offline, planning against a snapshot, that is expected);
    otherwise it exists and is unusable (a FIFO, too large, more than one line ...).
    """

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


class ResolveError(ValueError):
    """The spec cannot be completed (missing secrets, ...); ``problems`` lists every one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def resolve(
    spec: Spec,
    live: HostState,
    now: int,
    secrets: SecretReader,
    offline: bool = False,
    unchanged: frozenset[str] = frozenset(),
) -> tuple[HostState, list[str]]:
    """The desired `HostState` for ``spec`` on a host that is in state ``live``, and notes.

    Raises `ResolveError` listing every problem (a missing secret names the user, never the
    secret's value). Domains the spec does not name are kept as they are live. ``offline``
    (planning against a saved snapshot, as CI does without secrets): a secret that cannot be
    read is a note, not an error; a redacted live hash never needs the secret. ``unchanged``
    names domains known to resolve to their live domain of the same name (plan's resolution
    memo, `cache.resolved`, knows their inputs are those of an earlier plan without a change
    there): that live domain is taken as it is.
    """
    notes: list[str] = []
    problems: list[str] = []
    global_options = {**live.options, **spec.options}
    desired_domains: dict[str, Domain] = {}
    claimed: set[str] = set()
    counterparts = live_counterparts(spec.domains, live)  # once: per domain it would cost 1,000 x 1,000
    for dspec in spec.domains:
        live_domain = counterparts.get(dspec.name)
        if dspec.name in unchanged and live_domain is not None and live_domain.name == dspec.name:
            claimed.add(live_domain.name)
            desired_domains[dspec.name] = live_domain
            continue
        if live_domain is not None:
            claimed.add(live_domain.name)
            moved = moving_problem(dspec, live_domain, live.options, global_options)
            if moved:
                problems.append(moved)
                continue
        desired_domains[dspec.name] = resolve_domain(
            dspec, live_domain, global_options, spec, now, secrets, notes, problems, offline
        )
    if problems:
        raise ResolveError(problems)
    domains = [d for d in live.domains if d.name not in claimed]
    domains += desired_domains.values()
    control = resolve_control(
        live.control, spec.domains, [d for d in live.domains if d.name in claimed], desired_domains
    )
    return HostState(options=global_options, control=control, domains=tuple(domains)), notes


def moving_problem(
    dspec: DomainSpec, live: Domain, live_global: Mapping[str, OptionValue], desired_global: Mapping[str, OptionValue]
) -> str | None:
    """Why the spec would move a live domain's table (not supported), or None.

    A new base user or a new ``password-file`` means another table: applying it would leave
    the live users, their mailboxes and the mail routing behind. Such a move is done by hand
    (copy the table and ``users/``, then adopt with export); the plan refuses it.
    """
    if live.users and dspec.base_user != live.base_user:
        return (
            f"{dspec.name}: base user {live.base_user!r} -> {dspec.base_user!r} would move the domain's "
            f"{len(live.users)} entries and mailboxes to another home; vmreconcile does not move domains"
        )
    before = layered_value("password-file", live.options, live_global)
    after = layered_value("password-file", {**live.options, **dspec.options}, desired_global)
    if live.users and before != after:
        return (
            f"{dspec.name}: password-file {before!r} -> {after!r} would leave the live table with "
            f"{len(live.users)} entries behind; rename the table by hand first"
        )
    return None


def live_counterparts(domains: Iterable[Domain | DomainSpec], live: HostState) -> dict[str, Domain]:
    """Desired domain name -> the live domain it manages: the same name, else the first live
    domain of the same base user (VMailMgr keeps one table per base user). The one rule that
    resolve, diff and the plan's digests and brake counts all follow."""
    by_name = {d.name: d for d in live.domains}
    by_base: dict[str, Domain] = {}
    for domain in live.domains:
        by_base.setdefault(domain.base_user, domain)
    out = {}
    for wanted in domains:
        found = by_name.get(wanted.name) or by_base.get(wanted.base_user)
        if found is not None:
            out[wanted.name] = found
    return out


def match_live_domain(dspec: DomainSpec, live: HostState) -> Domain | None:
    """The live domain a spec domain manages (`live_counterparts` for one domain)."""
    return live_counterparts([dspec], live).get(dspec.name)


def resolve_domain(
    dspec: DomainSpec,
    live: Domain | None,
    global_options: Mapping[str, OptionValue],
    spec: Spec,
    now: int,
    secrets: SecretReader,
    notes: list[str],
    problems: list[str],
    offline: bool = False,
) -> Domain:
    options = {**(live.options if live else {}), **dspec.options}
    defaults = DomainDefaults.of(options, global_options)
    live_users = live.users if live else ()
    table: dict[str, VirtualUser] = {u.name: u for u in live_users}
    named: set[str] = set()
    new_entries: list[VirtualUser] = []

    def put(entry: VirtualUser) -> None:
        named.add(entry.name)
        if entry.name in table:
            table[entry.name] = entry
        else:
            table[entry.name] = entry
            new_entries.append(entry)

    postmaster = [defaults.postmaster_alias(a, now) for a in defaults.postmaster_aliases if a not in table]
    yaml_names = {ascii_lower(u.name) for u in dspec.users} | {ascii_lower(a) for u in dspec.users for a in u.aliases}
    if not live_users:  # vsetup runs before anything is added
        for entry in postmaster:
            if entry.name not in yaml_names:
                put(entry)

    for uspec in dspec.users:
        address = f"{dspec.name}/{uspec.name}"
        key = ascii_lower(uspec.name)
        user_is_new = key not in table
        resolved = resolve_user(
            uspec, table.get(key), defaults, spec.password_scheme, now, secrets, address, notes, problems, offline
        )
        if resolved is not None:
            put(resolved)
        # vadduser NAME ALIAS... makes the aliases in the same second as the user
        alias_time = resolved.created if user_is_new and resolved is not None else now
        for alias in uspec.aliases:
            akey = ascii_lower(alias)
            existing = table.get(akey)
            if existing is None:
                put(defaults.vadduser_alias(akey, key, alias_time))
            else:
                put(existing.with_changes(forwards=(key,)))

    catch_key = ascii_lower(defaults.default_username)
    if isinstance(dspec.catch_all, str):
        existing = table.get(catch_key)
        if existing is None:
            put(defaults.catch_all(dspec.catch_all, now))
        else:
            put(existing.with_changes(forwards=(dspec.catch_all,)))
    elif dspec.catch_all is None and catch_key not in named:
        table.pop(catch_key, None)
        new_entries = [e for e in new_entries if e.name != catch_key]
    elif dspec.catch_all is UNSET:
        named.add(catch_key)  # "leave the live entry alone", prune included

    named.update(defaults.postmaster_aliases)  # never pruned
    for entry in postmaster:  # vsetup re-run: create the missing ones
        if entry.name not in table:
            put(entry)

    # table order is creation order: new entries given an explicit, older creation time
    # (an exported table rebuilt on an empty home) go where VMailMgr had them; ties keep YAML order
    new_entries.sort(key=lambda e: table.get(e.name, e).created)
    new_entries = place_vadduser_extras([table.get(e.name, e) for e in new_entries], defaults)
    order = [u.name for u in live_users] + [e.name for e in new_entries]
    users = []
    for name in order:
        if name not in table:
            continue
        if dspec.prune and name not in named:  # every new entry is named: only live ones go
            continue
        users.append(table[name])
    users_t = tuple(users)

    needed = {u.directory for u in users_t if u.has_mailbox and u.directory and not u.directory.startswith("/")}
    live_maildirs = live.maildirs if live else frozenset()
    maildirs = live_maildirs | needed if not needed <= live_maildirs else live_maildirs
    return Domain(
        name=dspec.name,
        base_user=dspec.base_user,
        wildcard=dspec.wildcard,
        domain_aliases=tuple(dspec.domain_aliases),
        options=options,
        qmail_default=qmail_default_for(spec.bindir),
        users=users_t,
        maildirs=frozenset(maildirs),
    )


def resolve_user(
    uspec: UserSpec,
    live: VirtualUser | None,
    defaults: DomainDefaults,
    scheme: str,
    now: int,
    secrets: SecretReader,
    address: str,
    notes: list[str],
    problems: list[str],
    offline: bool = False,
) -> VirtualUser | None:
    """One entry: live fields where the spec is silent, VMailMgr's defaults for a new entry."""
    entry = defaults.new_of_kind(uspec.kind, uspec.name, now) if live is None else live
    changes: dict[str, object] = {}
    for name, value in uspec.given.items():
        if name == "password":
            continue  # a PasswordSpec: resolved below
        if isinstance(value, list):
            value = tuple(value)
        if getattr(entry, name) != value:
            changes[name] = value
    password = resolve_password(uspec.password, live, scheme, secrets, address, notes, problems, offline)
    if password is not None and password != entry.password:
        changes["password"] = password
    # the same object when nothing changes: the diff then compares by identity (fast at fleet scale)
    return entry.with_changes(**changes) if changes else entry


def resolve_password(
    pw: PasswordSpec | object,
    live: VirtualUser | None,
    scheme: str,
    secrets: SecretReader,
    address: str,
    notes: list[str],
    problems: list[str],
    offline: bool = False,
) -> str | None:
    """The password field to store, or None to keep what the entry has (live, or ``*`` if new)."""
    if pw is UNSET or not isinstance(pw, PasswordSpec) or pw.kind == "unmanaged":
        return None
    if pw.kind == "none":
        return "*"
    if pw.kind == "hash":
        value = pw.value or "*"
        if live is not None and live.password.startswith(UNVERIFIABLE_PREFIX):
            notes.append(
                f"{address}: live password is {live.password.removeprefix(UNVERIFIABLE_PREFIX)} "
                "(plaintext-equivalent, redacted without a digest); not verifiable offline, not compared"
            )
            return None
        if live is not None and is_redacted(live.password) and hash_digest(value) == hash_digest(live.password):
            return None
        return value
    if live is not None and is_redacted(live.password):  # a snapshot: the secret is not even read
        notes.append(
            f"{address}: password from a {pw.kind} secret is not verifiable offline (hash redacted); not compared"
        )
        return None
    try:
        plain = secrets(pw.kind, pw.value or "")
    except SecretUnavailable as exc:
        if offline and exc.missing:
            plain = None
        else:
            problems.append(f"{address}: password secret {{{pw.kind}: {pw.value}}}: {exc}")
            return None
    if plain is None:
        if offline:
            notes.append(
                f"{address}: password from a {pw.kind} secret that is not available offline; "
                "shown as '*' (apply hashes the secret)"
            )
            return "*"
        problems.append(f"{address}: password secret {{{pw.kind}: {pw.value}}} is not available")
        return None
    if live is not None and verify_password(plain, live.password):
        return None
    return hash_password(plain, scheme)


def passwd_changeable(spec: Spec) -> tuple[str, ...]:
    """``base/key`` for every user whose password is ``unmanaged`` (the authpipe may change it)."""
    out = []
    for dspec in spec.domains:
        for uspec in dspec.users:
            password = uspec.given.get("password")  # not uspec.password: 100,000 times __getattr__
            if isinstance(password, PasswordSpec) and password.kind == "unmanaged":
                out.append(f"{dspec.base_user}/{ascii_lower(uspec.name)}")
    return tuple(out)


def resolve_control(
    live: Mapping[str, tuple[str, ...]],
    specs: Iterable[DomainSpec],
    live_domains: list[Domain],
    desired: Mapping[str, Domain],
) -> dict[str, tuple[str, ...]]:
    """Control files with every managed domain's names listed, every other line kept.

    Keys a managed domain no longer has (a dropped alias or wildcard) are removed from
    ``virtualdomains`` and from both rcpthosts files.
    """
    control = dict(live)
    wanted: dict[str, tuple[str, str]] = {}  # key -> (base user, rcpthosts file)
    for dspec in specs:
        domain = desired[dspec.name]
        for key in domain.virtualdomains_keys:
            wanted[ascii_lower(key)] = (domain.base_user, dspec.rcpthosts_file)
    stale = sorted({ascii_lower(k) for d in live_domains for k in d.virtualdomains_keys} - set(wanted))
    for file in ctl.MANAGED_FILES:
        old = tuple(control.get(file.name, ()))
        if file.shape == ctl.MAP:
            lines = _resolve_map(old, {key: base for key, (base, _) in wanted.items()}, stale)
        else:
            lines = _resolve_hosts(file.name, old, {key: target for key, (_, target) in wanted.items()}, stale)
        if lines or file.name in control:
            control[file.name] = lines
    return control


def _resolve_map(lines: tuple[str, ...], wanted: Mapping[str, str], stale: list[str]) -> tuple[str, ...]:
    """``virtualdomains``: each wanted key mapped once to its base user, stale keys gone."""
    current = ctl.virtualdomains_map(lines)
    count: dict[str, int] = {}
    for line in lines:
        key = ctl.line_key(ctl.MAP, line)
        if key is not None:
            count[key] = count.get(key, 0) + 1
    for key in stale:
        lines = ctl.remove_virtualdomain(lines, key)
    for key, base_user in wanted.items():
        if current.get(key) != base_user or count.get(key, 0) != 1:
            lines = ctl.set_virtualdomain(lines, key, base_user)
    return lines


def _resolve_hosts(name: str, lines: tuple[str, ...], targets: Mapping[str, str], stale: list[str]) -> tuple[str, ...]:
    """``rcpthosts``/``morercpthosts``: each key listed in the file its domain names, stale keys
    gone; a key the YAML moved to ``morercpthosts`` leaves ``rcpthosts``."""
    listed = set(ctl.host_lines(lines))
    for key in stale:
        if key in listed:
            lines = ctl.remove_line(lines, key)
    for key, target in targets.items():
        if target == name and key not in listed:
            lines = ctl.add_line(lines, key)
        elif target != name and key in listed and name == ctl.RCPTHOSTS:
            lines = ctl.remove_line(lines, key)
    return lines
