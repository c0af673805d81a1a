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
from .desired.export import ExportError, export_text, export_with_losses, shown
from .desired.load import check_config
from .host import Host
from .live import read_live_state
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
    """Export ``host`` (one domain with ``domain``) and check the export against it."""
    changeable = read_changeable(host)
    return adopt_state(read_live_state(host), domain, changeable)


def adopt_state(state: HostState, domain: str | None = None, changeable: tuple[str, ...] | None = None) -> Adoption:
    """`adopt` on a state already read (pure but for a temporary copy of the YAML)."""
    doc, notes = export_with_losses(state, domain, changeable)
    text = export_text(doc, [n.text for n in notes])
    lost = [n.text for n in notes]
    refused = validation_errors(text)
    if refused:  # live data validate refuses (a hash libxcrypt cannot use, a control character, a loop)
        lost += [f"the export does not validate: {problem}" for problem in refused]
        return Adoption(export_text(doc, lost), tuple(lost))
    plan = plan_of_export(text, state, domain, changeable)
    explained = {n.address for n in notes}
    lost += [
        f"planning the export against this host still plans: {_describe(c)}"
        for c in plan.changes
        if c.address not in explained
    ]
    return Adoption(export_text(doc, lost) if len(lost) > len(notes) else text, tuple(lost))


def validation_errors(text: str) -> list[str]:
    """What validate refuses in the exported YAML, each as ``YAML path: message`` (the line of a
    temporary file would mean nothing to the reader)."""
    with tempfile.TemporaryDirectory(prefix="vmreconcile-export-") as scratch:
        config = Path(scratch) / "exported.yaml"
        config.write_text(text, encoding="utf-8")
        errors = check_config(config).errors
    return [str(Diagnostic(None, error.path, error.message)) for error in errors]


def plan_of_export(text: str, state: HostState, domain: str | None, changeable: tuple[str, ...] | None) -> Plan:
    """What ``vmreconcile plan`` makes of ``text`` on a host in ``state`` (loaded from a file,
    as plan loads it, so the YAML reader and the schema take part in the check)."""
    with tempfile.TemporaryDirectory(prefix="vmreconcile-export-") as scratch:
        config = Path(scratch) / "exported.yaml"
        config.write_text(text, encoding="utf-8")
        checked = check_config(config)
    if checked.errors or checked.spec is None:
        first = checked.errors[0].message if checked.errors else "no configuration"
        raise ExportError(f"the exported configuration does not validate ({first}); please report this")
    return build_plan(
        checked.spec,
        state,
        now=int(time.time()),
        secrets=lambda kind, ref: None,  # an export holds hashes and `unmanaged` only
        live_changeable=changeable,
        targets=(domain,) if domain is not None else None,
    )


def _describe(change: Change) -> str:
    return f"{_VERBS.get(change.action, change.action)} {change.type} {shown(change.address)}"
