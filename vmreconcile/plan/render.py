"""Plan renderers: text for people, JSON for programs, markdown for a pull-request comment.

One function per format, no decisions: everything they show is already on the `Plan`, and
hashes were masked when the changes were built.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .changes import Change, Plan

_SYMBOL = {"create": "+", "update": "~", "delete": "-"}
_COLOUR = {"create": "green", "update": "yellow", "delete": "red"}

Style = Callable[[str, str], str]
_NO_CHANGES_WITH_ERRORS = "No changes for the domains that could be planned; see the errors below."


def _plain(text: str, _colour: str) -> str:
    return text


def _value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "unlimited/never"
    return json.dumps(value, ensure_ascii=False)


def summary_line(plan: Plan) -> str:
    add, change, destroy = plan.summary()
    return f"Plan: {add} to add, {change} to change, {destroy} to destroy."


def _field_lines(change: Change) -> list[str]:
    if change.action == "update":
        return [
            f"{name}: {_value(change.before.get(name))} -> {_value(change.after.get(name))}" for name in change.after
        ]
    fields = change.after if change.action == "create" else change.before
    return [f"{name}: {_value(value)}" for name, value in fields.items()]


def render_text(plan: Plan, style: Style = _plain) -> str:
    """Terraform-like text; ``style(text, colour)`` adds colour on a terminal."""
    if plan.empty:
        lines = [_NO_CHANGES_WITH_ERRORS if plan.errors else "No changes. The host matches the configuration."]
    else:
        lines = []
        for change in plan.changes:
            head = f"{_SYMBOL[change.action]} {change.action} {change.type} {change.address}"
            lines.append(style(head, _COLOUR[change.action]))
            lines += [f"    {line}" for line in _field_lines(change)]
    if plan.notes:
        lines.append("")
        lines.append("Notes:")
        lines += [f"  - {note}" for note in plan.notes]
    brake = plan.brake_violations()
    if brake:
        lines.append("")
        lines += [style(f"Safety brake: {message}", "red") for message in brake]
    if plan.errors:
        lines.append("")
        lines.append(style("Not planned (errors):", "red"))
        lines += [f"  - {error}" for error in plan.errors]
    if not plan.empty:
        lines.append("")
        lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def render_json(plan: Plan) -> str:
    doc = plan.to_json()
    doc["brake"] = plan.brake_violations()
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "\\n")


def render_markdown(plan: Plan) -> str:
    """A pull-request comment: summary heading, one table row per change, notes and brake."""
    add, change, destroy = plan.summary()
    out = [f"### vmreconcile plan: {add} to add, {change} to change, {destroy} to destroy", ""]
    if plan.empty:
        out.append(_NO_CHANGES_WITH_ERRORS if plan.errors else "No changes. The host matches the configuration.")
    else:
        out += ["| Action | Type | Address | Fields |", "|---|---|---|---|"]
        for c in plan.changes:
            fields = "<br>".join(f"`{_md_cell(line)}`" for line in _field_lines(c))
            out.append(f"| {_SYMBOL[c.action]} {c.action} | {c.type} | `{_md_cell(c.address)}` | {fields} |")
    brake = plan.brake_violations()
    if brake:
        out += ["", "**Safety brake:**", ""] + [f"- {_md_cell(m)}" for m in brake]
    if plan.errors:
        out += ["", "**Not planned (errors):**", ""] + [f"- {_md_cell(e)}" for e in plan.errors]
    if plan.notes:
        out += ["", "<details><summary>Notes</summary>", ""] + [f"- {_md_cell(n)}" for n in plan.notes]
        out += ["", "</details>"]
    return "\n".join(out) + "\n"
