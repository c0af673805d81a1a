"""Adopting a live host: its export, and the proof that planning the export changes nothing.

`desired.export` writes what the YAML can say and names what it cannot. That list is only as
good as our knowledge of every way a host can differ from what the planner would make of its
export, so `adopt` does not trust it alone: it loads the exported YAML back exactly as
``vmreconcile plan`` would, plans it against the very state it was exported from, and names
every change that plan still holds as lost too. An adoption is exact only when both lists are
empty; ``vmreconcile export`` refuses anything else unless ``--lossy``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .desired.errors import Diagnostic
from .desired.export import export_text, export_with_losses, shown, unknown_domain
from .desired.load import CheckResult, check_config
from .desired.spec import Spec
from .host import Host
from .live import DomainReadError, live_domain_names, read_live_reporting
from .model import HostState
from .plan.build import build_plan
from .plan.changes import Change, Plan
from .workflow import read_changeable

#: What each plan action means to someone adopting a host.
_VERBS = {"create": "create", "update": "change", "delete": "delete"}


@dataclass(frozen=True, slots=True)
class Adoption:
    """The exported YAML and every part of the live host it does not carry."""

    text: str
    lost: tuple[str, ...]

    @property
    def exact(self) -> bool:
        return not self.lost


def adopt(host: Host, domain: str | None = None) -> Adoption:
    """Export ``host`` (one domain with ``domain``, the only one read then) and check the export
    against it. Raises `DomainsUnreadable` naming every domain that cannot be read: an export
    without them would be taken for the whole host."""
    changeable = read_changeable(host)
    state, errors = read_live_reporting(host, domain)
    if errors:
        raise DomainsUnreadable(errors)
    if domain is not None and state.domain(domain) is None:
        raise unknown_domain(domain, live_domain_names(state))
    return adopt_state(state, domain, changeable)


class DomainsUnreadable(Exception):
    """Domains whose live files cannot be read (each a `DomainReadError`)."""

    def __init__(self, errors: list[DomainReadError]) -> None:
        self.errors = errors
        super().__init__("; ".join(map(str, errors)))


def adopt_state(state: HostState, domain: str | None = None, changeable: tuple[str, ...] | None = None) -> Adoption:
    """`adopt` on a state already read (pure but for a temporary copy of the YAML)."""
    doc, notes = export_with_losses(state, domain, changeable)
    text = export_text(doc, [n.text for n in notes])
    lost = [n.text for n in notes]
    checked = check_export(text)
    if checked.errors or checked.spec is None:  # live data validate refuses (an unusable hash, a loop ...)
        lost += [f"the export does not validate: {Diagnostic(None, e.path, e.message)}" for e in checked.errors]
        return Adoption(export_text(doc, lost), tuple(lost))
    plan = plan_of_export(checked.spec, state, domain, changeable)
    explained = {n.address for n in notes}
    lost += [
        f"planning the export against this host still plans: {_describe(c)}"
        for c in plan.changes
        if c.address not in explained
    ]
    return Adoption(export_text(doc, lost) if len(lost) > len(notes) else text, tuple(lost))


def check_export(text: str) -> CheckResult:
    """``text`` loaded from a file as plan loads it, so the YAML reader, the schema and every
    check of validate take part (its errors are reported by YAML path: the line of a temporary
    file would mean nothing to the reader)."""
    with tempfile.TemporaryDirectory(prefix="vmreconcile-export-") as scratch:
        config = Path(scratch) / "exported.yaml"
        config.write_text(text, encoding="utf-8")
        return check_config(config)


def plan_of_export(spec: Spec, state: HostState, domain: str | None, changeable: tuple[str, ...] | None) -> Plan:
    """What ``vmreconcile plan`` makes of the exported ``spec`` on a host in ``state``."""
    return build_plan(
        spec,
        state,
        now=int(time.time()),
        secrets=lambda kind, ref: None,  # an export holds hashes and `unmanaged` only
        live_changeable=changeable,
        targets=(domain,) if domain is not None else None,
    )


def _describe(change: Change) -> str:
    return f"{_VERBS.get(change.action, change.action)} {change.type} {shown(change.address)}"
