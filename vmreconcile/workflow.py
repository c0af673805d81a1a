"""The host-side I/O around a pure plan: preflight, the live state, secrets, the authpipe list.

``plan`` (read-only), ``apply`` (under the lock) and ``demo`` share these, so a plan and the
apply that carries it out see exactly the same inputs. Nothing here writes: writing is
``apply/``'s job.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from . import preflight
from .apply.reloadrecord import reload_change_note
from .cache.livestate import LiveCache
from .cache.resolved import ResolveMemo
from .cache.store import CacheStore
from .desired.spec import DomainSpec, Spec
from .formats.config import PASSWD_CHANGEABLE, changeable_entries, layered_value
from .formats.control import VIRTUALDOMAINS
from .host import LOCAL_CONFIG_DIR, BaseUserMissing, Host
from .live import (
    DomainReadError,
    OnError,
    Progress,
    Skip,
    group_virtualdomains,
    read_control_files,
    read_domain,
    read_domains,
    read_global_options,
    read_live_state,
    split_domain_keys,
)
from .model import Domain, HostState, OptionValue
from .plan.build import build_plan, restrict_spec
from .plan.changes import Change, Plan
from .plan.diff import diff
from .plan.resolve import SecretReader, SecretUnavailable, live_counterparts
from .preflight import HostProblems, Problem
from .tables import UnsafeFile, read_bounded

#: The most a ``{file:}`` secret may hold: a password, not a file to hash.
MAX_SECRET_BYTES = 4096


def secret_reader(base_dir: Path) -> SecretReader:
    """``{env:NAME}`` from the environment, ``{file:PATH}`` relative to the config's directory.

    A file's trailing newlines are not part of the secret. The file is read like every file a
    configuration names (`tables.read_bounded`): non-blocking (a FIFO never hangs the plan), a
    regular file only (``/dev/zero`` is refused, not read), at most `MAX_SECRET_BYTES`. A secret
    that cannot be used raises `SecretUnavailable` saying why (the planner names the variable
    or file), never showing the value. Nothing is cached or logged.
    """

    def read(kind: str, ref: str) -> str | None:
        if kind == "env":
            value = os.environ.get(ref)
            if value is None:
                raise SecretUnavailable("not set", missing=True)
            return _usable_secret(value)
        if kind == "file":
            path = Path(ref)
            if not path.is_absolute():
                path = base_dir / path
            try:
                raw = read_bounded(path, limit=MAX_SECRET_BYTES, follow_symlinks=True)
            except UnsafeFile as exc:
                raise SecretUnavailable(exc.reason) from None
            if raw is None:
                raise SecretUnavailable("no such file", missing=True)
            return _usable_secret(raw.decode("utf-8", "surrogateescape").rstrip("\r\n"))
        return None

    return read


def _usable_secret(value: str) -> str:
    """``value``, or `SecretUnavailable` when no password can be made of it: empty, more than
    one line, or a NUL (crypt(3) would stop there)."""
    if not value:
        raise SecretUnavailable("empty")
    if "\n" in value or "\r" in value:
        raise SecretUnavailable("more than one line")
    if "\0" in value:
        raise SecretUnavailable("contains a NUL character")
    return value


def config_dir(spec: Spec, fallback: Path) -> Path:
    return Path(spec.sources[0]).resolve().parent if spec.sources else fallback


def read_live_for(
    host: Host,
    wanted: Iterable[tuple[str, str]] = (),
    targets: tuple[str, ...] | None = None,
    *,
    on_error: OnError | None = None,
    skip: Skip | None = None,
    cache: LiveCache | None = None,
    progress: Progress | None = None,
) -> HostState:
    """The live state, plus the table of any wanted (name, base user) not yet in ``virtualdomains``.

    A base user whose home already has a table (set up by hand, or before a half-finished
    apply) is adopted as it is, so its entries are updated in place, never overwritten.
    With ``targets`` only those domains' tables are read (``--domain``: a fleet of 1,000
    domains is not read to change one user). ``on_error``/``skip``/``cache``/``progress`` as
    in `read_live_state`.
    """
    wanted = list(wanted)
    if targets is None:
        live = read_live_state(host, on_error=on_error, skip=skip, cache=cache, progress=progress)
    else:
        live = read_targeted(host, targets, wanted, on_error=on_error, skip=skip, cache=cache)
    known = {d.base_user for d in live.domains} | {d.name for d in live.domains}
    extra = []
    for name, base_name in wanted:
        if name in known or base_name in known or (skip is not None and skip(name, base_name)):
            continue
        try:
            found = adoptable_domain(host, name, base_name, live.options, cache)
        except DomainReadError as exc:
            if on_error is None:
                raise
            on_error(exc)
            continue
        if found is not None:
            extra.append(found)
    return live.with_changes(domains=live.domains + tuple(extra)) if extra else live


def adoptable_domain(
    host: Host,
    name: str,
    base_name: str,
    global_options: Mapping[str, OptionValue],
    cache: LiveCache | None = None,
) -> Domain | None:
    """The domain's files when its base user's home already holds a table, ``.qmail-default``
    or ``.vmailmgr/`` although ``virtualdomains`` does not route it yet, else None (a new
    domain). Adopted, its entries and options are kept and updated in place, as the next plan
    (which reads them once the domain is routed) will expect."""
    try:
        base_user = host.base_user(base_name)
    except BaseUserMissing as exc:
        raise DomainReadError(name, base_name, str(exc)) from None
    home = host.home_str(base_user)
    password_file = str(layered_value("password-file", global_options))
    markers = (password_file + ".cdb", ".qmail-default", LOCAL_CONFIG_DIR)
    if not any(os.path.lexists(os.path.join(home, marker)) for marker in markers):
        return None
    return read_domain(host, base_name, [name], global_options, cache)


def read_targeted(
    host: Host,
    targets: tuple[str, ...],
    wanted: list[tuple[str, str]],
    *,
    on_error: OnError | None = None,
    skip: Skip | None = None,
    cache: LiveCache | None = None,
) -> HostState:
    """Control files, global options and only the domains named in ``targets``."""
    control = read_control_files(host)
    global_options = read_global_options(host)
    bases = {base for name, base in wanted if name in targets}
    groups = [
        (base_user, keys)
        for base_user, keys in group_virtualdomains(control.get(VIRTUALDOMAINS, ()))
        if split_domain_keys(keys)[0] in targets or base_user in bases
    ]
    domains = read_domains(host, groups, global_options, on_error=on_error, skip=skip, cache=cache)
    return HostState(options=global_options, control=control, domains=tuple(domains))


#: ``/etc/vmailmgr/vmreconcile-passwd-changeable`` holds one line per unmanaged password.
CHANGEABLE_LIMIT = 16 * 1024 * 1024


def read_changeable(host: Host) -> tuple[str, ...] | None:
    """The authpipe's ``vmreconcile-passwd-changeable`` entries (None when the file is missing)."""
    raw = read_bounded(host.fspath(f"/etc/vmailmgr/{PASSWD_CHANGEABLE}"), limit=CHANGEABLE_LIMIT, follow_symlinks=True)
    if raw is None:
        return None
    return changeable_entries(raw)


def plan_on_host(
    host: Host,
    spec: Spec,
    *,
    now: int | None = None,
    purge_mailboxes: bool = False,
    fallback_dir: Path = Path("."),
    targets: tuple[str, ...] | None = None,
    cache: LiveCache | None = None,
    memo: ResolveMemo | None = None,
    progress: Progress | None = None,
) -> tuple[Plan, HostState]:
    """Preflight, read the host (only ``targets`` when given) and plan ``spec`` against it.

    ``cache`` is plan's live cache (`cache.livestate`), saved once the host is read; ``memo``
    its resolution memo (`cache.resolved`), saved once the plan is made. ``progress(done,
    total)`` is called while the domains are read.

    Host-wide problems (no qmail control directory, a bad global option, an unusable control
    file) raise `HostProblems`. A domain with problems (its base user, its home, its files, a
    path it would need) is left out and listed in ``Plan.errors``; the plan then covers the
    other domains exactly as ``--domain`` with their names would, so apply can be given those.
    """
    planned = restrict_spec(spec, targets) if targets is not None else spec
    host = host.using_qmail_root(configured_qmail_root(spec.options))
    preflight.check_qmail_root(host)
    try:
        control = read_control_files(host)
        global_live = read_global_options(host)
    except UnsafeFile as exc:
        raise HostProblems([Problem(exc.strerror or str(exc))]) from None
    preflight.check_global_options(global_live, spec)
    live_bases = [base for base, _ in group_virtualdomains(control.get(VIRTUALDOMAINS, ()))]
    problems = preflight.check_domains(host, spec, planned.domains, live_bases, global_live)
    broken = {p.domain for p in problems}
    by_name = {d.name: d for d in planned.domains}
    by_base = {d.base_user: d for d in planned.domains}
    notes: list[str] = []

    def owner(name: str, base_user: str) -> DomainSpec | None:
        return by_name.get(name) or by_base.get(base_user)

    def skip(name: str, base_user: str) -> bool:
        found = owner(name, base_user)
        return found is not None and found.name in broken

    def on_error(exc: DomainReadError) -> None:
        found = owner(exc.domain, exc.base_user)
        if found is None:
            notes.append(f"domain {exc.domain} is not in the configuration and could not be read: {exc.message}")
            return
        problems.append(Problem(exc.message, found.name, found.position))
        broken.add(found.name)

    live = read_live_for(host, wanted(planned), targets, on_error=on_error, skip=skip, cache=cache, progress=progress)
    if cache is not None:
        cache.save(whole_host=targets is None)
    counterparts = live_counterparts([d for d in planned.domains if d.name not in broken], live)
    for dspec in planned.domains:
        old = counterparts.get(dspec.name)
        if old is not None and dspec.name not in broken:
            home = host.home_str(host.base_user(dspec.base_user))
            found = preflight.domain_option_problems(dspec, old.options, home)
            problems += found
            broken.update(p.domain for p in found)
    clock = int(time.time()) if now is None else now
    unchanged = memo.unchanged(planned, live, cache) if memo is not None else frozenset()
    while True:  # again only when the plan needs a path that a domain cannot have
        healthy = tuple(d.name for d in planned.domains if d.name not in broken)
        plan = build_plan(
            spec,
            live,
            now=clock,
            secrets=secret_reader(config_dir(spec, fallback_dir)),
            purge_mailboxes=purge_mailboxes,
            live_changeable=read_changeable(host),
            targets=healthy if (broken or targets is not None) else None,
            unchanged=unchanged,
        )
        found = preflight.change_path_problems(plan.changes, planned, *_homes_and_options(host, plan))
        if not found:
            break
        problems += found
        broken.update(p.domain for p in found)
    if memo is not None:
        memo.remember(plan, planned, live, cache)
        memo.save()
    reload_note = reload_change_note(host, spec.reload_command)  # qmail.reload: not a file, so from the history
    if reload_note:
        notes.append(reload_note)
    if problems or notes:
        plan = replace(plan, errors=tuple(str(p) for p in problems), notes=plan.notes + tuple(notes))
    return plan, live


def _homes_and_options(
    host: Host, plan: Plan
) -> tuple[dict[str, str], dict[str, tuple[Mapping[str, OptionValue], ...]]]:
    """Domain -> home as the mail system knows it, and -> its option layers, for the domains
    the plan changes (their base users passed the preflight)."""
    homes: dict[str, str] = {}
    layers: dict[str, tuple[Mapping[str, OptionValue], ...]] = {}
    names = {c.domain for c in plan.changes if c.domain}
    for domain in plan.desired.domains:
        if domain.name in names:
            user = host.find_base_user(domain.base_user)
            if user is not None:
                homes[domain.name] = user.home
                layers[domain.name] = (domain.options, plan.desired.options)
    return homes, layers


Loader = Callable[[Path], Spec]


def load_config(path: Path, cache: CacheStore | None = None) -> Spec:
    """``desired.load.load_spec`` (imported late: the loader is its own module); ``cache`` is
    plan's (`desired.incremental`)."""
    from .desired.load import load_spec

    return load_spec(path, cache)


def wanted(spec: Spec) -> list[tuple[str, str]]:
    return [(d.name, d.base_user) for d in spec.domains]


def wanted_by_plan(plan: Plan) -> list[tuple[str, str]]:
    return [(d.name, d.base_user) for d in plan.desired.domains]


def read_live_for_plan(host: Host, plan: Plan) -> HostState:
    """The live state read exactly as it was for ``plan`` (same targets), to compare checksums."""
    host = host.using_qmail_root(configured_qmail_root(plan.desired.options))
    return read_live_for(host, wanted_by_plan(plan), plan.targets)


class SavedPlanMismatch(ValueError):
    """A saved plan's recorded changes are not what its desired state changes on the host now."""


def replan_saved(host: Host, plan: Plan) -> Plan:
    """A saved plan recomputed against the host as it is now (the caller holds the lock).

    The host must still pass the preflight for every domain the plan writes (homes can change
    between plan and apply), the live state must be the one the plan was made against (its
    checksum), and the changes recomputed from the plan's desired state must be exactly the
    recorded ones; the brake's counts and the tables' digests come from the live host. Raises
    `HostProblems`, `DomainReadError` or `SavedPlanMismatch`; returns the plan to execute.
    """
    from .plan.build import plan_for_desired
    from .plan.checksum import state_checksum

    host = host.using_qmail_root(configured_qmail_root(plan.desired.options))
    preflight.check_qmail_root(host)
    written = {c.domain for c in plan.changes if c.domain}
    as_spec = Spec(
        domains=tuple(
            DomainSpec(d.name, d.base_user, options=d.options, system_account=True) for d in plan.desired.domains
        )
    )  # the system-account rule was checked when the plan was made, from the YAML
    writes = [d for d in as_spec.domains if d.name in written]
    problems = preflight.check_domains(host, as_spec, writes, global_options=plan.desired.options)
    if problems:
        raise HostProblems(problems)
    live = read_live_for(host, wanted_by_plan(plan), plan.targets)
    if state_checksum(live) != plan.checksum():
        raise SavedPlanMismatch("the live state changed since this plan was made; run `vmreconcile plan --out` again")
    fresh = plan_for_desired(
        plan.desired,
        live,
        reload_command=plan.reload_command,
        changeable=plan.changeable,
        live_changeable=read_changeable(host) if plan.changeable is not None else None,
        purge_mailboxes=plan.purge_mailboxes,
        targets=plan.targets,
    )
    if _change_records(fresh.changes) != _change_records(plan.changes):
        raise SavedPlanMismatch(
            "the changes recorded in this plan are not what its desired state changes on this host now; "
            "refusing to apply it (make the plan again)"
        )
    return fresh


def _change_records(changes: Iterable[Change]) -> list[tuple[object, ...]]:
    return [(json.dumps(c.to_json(), sort_keys=True), c.domain, c.target) for c in changes]


def remaining_changes(host: Host, plan: Plan, skip: Iterable[str] = ()) -> list[Change]:
    """What still differs, after an apply, between the plan's desired state and the host, for
    everything the plan wrote: empty when the next plan would be empty there. Domains in
    ``skip`` (they failed and were left as they were) are not read back."""
    host = host.using_qmail_root(configured_qmail_root(plan.desired.options))
    skipped = set(skip)
    written = tuple(sorted({c.domain for c in plan.changes if c.domain and c.domain not in skipped}))
    live = read_live_for(host, wanted_by_plan(plan), written)
    desired = plan.desired.with_changes(domains=tuple(d for d in plan.desired.domains if d.name in written))
    return diff(
        desired,
        live,
        purge_mailboxes=plan.purge_mailboxes,
        changeable=plan.changeable,
        live_changeable=read_changeable(host) if plan.changeable is not None else None,
    )


def configured_qmail_root(options: Mapping[str, OptionValue]) -> str | None:
    """The qmail root a configuration (or a plan's desired options) names, if any."""
    value = options.get("qmail-root")
    return value if isinstance(value, str) and value.startswith("/") else None
