"""``vmreconcile show``: the live state, as people (listvdomain-style) or programs (JSON) read it."""

from __future__ import annotations

import json
import sys
from enum import StrEnum

import typer

from ..formats.cdb import CdbError
from ..formats.vpwentry import RecordError
from ..host import BaseUserMissing, Host
from ..live import DomainReadError, read_live_reporting
from ..model import Domain, HostState
from ..printable import printable
from ..showjson import state_to_json
from ..tables import TableError
from .common import fail, host_of, warn
from .privilege import denied_text, live_error_text

#: Errors reading the live system that become one line on stderr and exit 1.
LIVE_ERRORS = (BaseUserMissing, CdbError, RecordError, TableError, DomainReadError, OSError)


class ShowFormat(StrEnum):
    text = "text"
    json = "json"


def render_text(state: HostState) -> str:
    """One block per domain, its users listed as VMailMgr's ``listvdomain`` prints them ([compat: admin-tools]);
    names and forwards from the tables are shown `printable` (a key may hold any byte but NUL)."""
    out = []
    for domain in state.domains:
        out.append(_domain_heading(domain))
        out.append("User Mailbox Aliases")
        for user in domain.users:
            line = f"{user.name} {'Yes' if user.has_mailbox else 'No'}"
            if not user.mailbox_enabled:
                line += "(disabled)"
            out.append(printable("".join([line, *(f" {f}" for f in user.forwards)])))
        out.append("")
    if not state.domains:
        out.append("no virtual domains in control/virtualdomains")
    return "\n".join(out).rstrip("\n") + "\n"


def _domain_heading(domain: Domain) -> str:
    names = [domain.name] + (["." + domain.name] if domain.wildcard else []) + list(domain.domain_aliases)
    return printable(f"# {', '.join(names)} (base user {domain.base_user}, {len(domain.users)} entries)")


def show(
    ctx: typer.Context,
    format: ShowFormat = typer.Option(
        ShowFormat.text, "--format", "-f", metavar="FORMAT", help="text (listvdomain-style) or json."
    ),
    domain: str | None = typer.Option(None, "--domain", metavar="DOMAIN", help="Only this domain."),
    redact: bool = typer.Option(False, "--redact", help="Replace each hash by sha256:<digest of the hash string>."),
) -> None:
    """Print the live state: control files, options, domains and their users.

    Example: vmreconcile --root /tmp/demo show --format json --redact > snapshot.json
    """
    host = host_of(ctx)
    try:
        state, errors = read_live_reporting(host, domain)
    except LIVE_ERRORS as exc:
        raise fail(live_error_text(exc, "show", host)) from None
    if errors and (format is ShowFormat.json or any(denied_text(e) for e in errors)):
        # a JSON snapshot is taken for the whole host (plan --state): never a partial one
        raise domain_errors(errors, "show", host)
    if domain is not None and state.domain(domain) is None and not errors:
        raise fail(f"no live domain {domain!r}")
    if format is ShowFormat.json:
        json.dump(state_to_json(state, redact=redact, domain=domain), sys.stdout, indent=2, ensure_ascii=True)
        sys.stdout.write("\n")
    else:
        if domain is not None:
            state = HostState(state.options, state.control, tuple(d for d in state.domains if d.name == domain))
        if state.domains or not errors:  # "no virtual domains" would be untrue when they are unreadable
            sys.stdout.write(render_text(state))
    if errors:
        raise domain_errors(errors, "show", host)


def domain_errors(errors: list[DomainReadError], command: str, host: Host) -> typer.Exit:
    """Each unreadable domain on one line of stderr, then the Exit (1) to raise; a permission
    problem is the one "needs root" message instead."""
    denied = next((text for e in errors if (text := denied_text(e, command, host))), None)
    if denied is not None:
        return fail(denied)
    for error in errors[:-1]:
        warn(str(error))
    last = str(errors[-1])
    others = "" if len(errors) == 1 else f" ({len(errors)} domains cannot be read)"
    return fail(f"{last}{others}; `{command} --domain DOMAIN` reads one domain alone")


def register(app: typer.Typer) -> None:
    app.command("show")(show)
