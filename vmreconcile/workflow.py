"""The host-side I/O around a pure plan: read the live state, secrets and the authpipe list.

``plan`` (read-only), ``apply`` (under the lock) and ``demo`` share these, so a plan and the
apply that carries it out see exactly the same inputs. Nothing here writes: writing is
``apply/``'s job.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .desired.spec import Spec
from .formats.config import PASSWD_CHANGEABLE
from .formats.control import VIRTUALDOMAINS
from .host import Host
from .live import (
    group_virtualdomains,
    read_control_files,
    read_domain,
    read_live_state,
    read_options,
    split_domain_keys,
)
from .model import HostState, OptionValue
from .plan.build import build_plan, restrict_spec
from .plan.changes import Plan
from .plan.resolve import SecretReader, SecretUnavailable
from .tables import FileRefused, open_table, read_capped, table_path

#: The most a ``{file:}`` secret may hold: a password, not a file to hash.
MAX_SECRET_BYTES = 4096


def secret_reader(base_dir: Path) -> SecretReader:
    """``{env:NAME}`` from the environment, ``{file:PATH}`` relative to the config's directory.

    A file's trailing newlines are not part of the secret. The file is read like every file a
    configuration names (`tables.read_capped`): non-blocking (a FIFO never hangs the plan), a
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
                raw = read_capped(path, MAX_SECRET_BYTES)
            except FileRefused as exc:
                raise SecretUnavailable(exc.reason, missing=exc.missing) from None
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
    host: Host, wanted: Iterable[tuple[str, str]] = (), targets: tuple[str, ...] | None = None
) -> HostState:
    """The live state, plus the table of any wanted (name, base user) not yet in ``virtualdomains``.

    A base user whose home already has a table (set up by hand, or before a half-finished
    apply) is adopted as it is, so its entries are updated in place, never overwritten.
    With ``targets`` only those domains' tables are read (``--domain``: a fleet of 1,000
    domains is not read to change one user).
    """
    wanted = list(wanted)
    live = read_live_state(host) if targets is None else read_targeted(host, targets, wanted)
    known = {d.base_user for d in live.domains} | {d.name for d in live.domains}
    extra = []
    for name, base_name in wanted:
        if name in known or base_name in known:
            continue
        base_user = host.base_user(base_name)
        password_file = host.domain_config(base_user).text("password-file")
        home = host.home(base_user)
        if open_table(table_path(home, password_file)) is None and not (home / ".qmail-default").exists():
            continue
        extra.append(read_domain(host, base_name, [name]))
    return live.with_changes(domains=live.domains + tuple(extra)) if extra else live


def read_targeted(host: Host, targets: tuple[str, ...], wanted: list[tuple[str, str]]) -> HostState:
    """Control files, global options and only the domains named in ``targets``."""
    control = read_control_files(host)
    bases = {base for name, base in wanted if name in targets}
    domains = []
    for base_user, keys in group_virtualdomains(control.get(VIRTUALDOMAINS, ())):
        name = split_domain_keys(keys)[0]
        if name in targets or base_user in bases:
            domains.append(read_domain(host, base_user, keys))
    return HostState(options=read_options(host.config_dir), control=control, domains=tuple(domains))


def read_changeable(host: Host) -> tuple[str, ...] | None:
    """The authpipe's ``vmreconcile-passwd-changeable`` lines (None when the file is missing)."""
    try:
        raw = (host.config_dir / PASSWD_CHANGEABLE).read_bytes()
    except FileNotFoundError:
        return None
    return tuple(line for line in raw.decode("utf-8", "surrogateescape").split("\n") if line)


def check_base_users(host: Host, spec: Spec) -> None:
    """Raise `BaseUserMissing` for the first spec domain whose base user the host lacks."""
    for dspec in spec.domains:
        host.base_user(dspec.base_user)


def plan_on_host(
    host: Host,
    spec: Spec,
    *,
    now: int | None = None,
    purge_mailboxes: bool = False,
    fallback_dir: Path = Path("."),
    targets: tuple[str, ...] | None = None,
) -> tuple[Plan, HostState]:
    """Read the host (only ``targets`` when given) and plan ``spec`` against it."""
    if targets is not None:
        spec = restrict_spec(spec, targets)
    host = host.using_qmail_root(configured_qmail_root(spec.options))
    check_base_users(host, spec)
    live = read_live_for(host, wanted(spec), targets)
    plan = build_plan(
        spec,
        live,
        now=int(time.time()) if now is None else now,
        secrets=secret_reader(config_dir(spec, fallback_dir)),
        purge_mailboxes=purge_mailboxes,
        live_changeable=read_changeable(host),
        targets=targets,
    )
    return plan, live


Loader = Callable[[Path], Spec]


def load_config(path: Path) -> Spec:
    """``desired.load.load_spec`` (imported late: the loader is its own module)."""
    from .desired.load import load_spec

    return load_spec(path)


def wanted(spec: Spec) -> list[tuple[str, str]]:
    return [(d.name, d.base_user) for d in spec.domains]


def wanted_by_plan(plan: Plan) -> list[tuple[str, str]]:
    return [(d.name, d.base_user) for d in plan.desired.domains]


def read_live_for_plan(host: Host, plan: Plan) -> HostState:
    """The live state read exactly as it was for ``plan`` (same targets), to compare checksums."""
    host = host.using_qmail_root(configured_qmail_root(plan.desired.options))
    return read_live_for(host, wanted_by_plan(plan), plan.targets)


def configured_qmail_root(options: Mapping[str, OptionValue]) -> str | None:
    """The qmail root a configuration (or a plan's desired options) names, if any."""
    value = options.get("qmail-root")
    return value if isinstance(value, str) and value.startswith("/") else None
