"""The text plan, for a terminal or a log.

Layout, top to bottom: the totals and a line per domain (``+a ~c -d``), the changes, the
notes, the safety brake, and the totals again (right above apply's prompt). In the default
view alike changes are grouped and every section is capped, so even a 40,000-change first
plan fits on one screen; each cap says what it left out and how to see it (``--compact``:
one line per change; ``--detail``: every field of every change, nothing capped).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

from ...printable import printable
from ..changes import Plan
from ..overview import DomainCount, Entry, NoteLine, domain_counts, entries, group_notes
from ..values import entry_heading, entry_pairs, note_text, number, pairs_text, totals

View = Literal["default", "compact", "detail"]
#: ``style(text, colour)``: colour for a terminal, or nothing.
Style = Callable[[str, str], str]
COLOUR = {"create": "green", "update": "yellow", "delete": "red"}
NO_CHANGES = "No changes. The host matches the configuration."
#: When some domains could not be planned, "the host matches" would not be true.
NO_CHANGES_WITH_ERRORS = "No changes for the domains that could be planned; see the errors below."
HOST_WIDE = "(host-wide)"


def plain_style(text: str, _colour: str) -> str:
    return text


class TextRenderer:
    """Renders a `Plan` as text in one `View`; the caps apply to the default view only."""

    max_domains = 10
    max_entries = 25
    max_notes = 6
    max_brake = 5

    def __init__(self, view: View = "default", style: Style = plain_style) -> None:
        self.view = view
        self.style = style

    def render(self, plan: Plan) -> str:
        lines: list[str] = []
        if plan.empty:
            lines.append(NO_CHANGES_WITH_ERRORS if plan.errors else NO_CHANGES)
        else:
            lines.append(totals(*plan.summary()))
            lines += self.domain_lines(domain_counts(plan.changes))
            lines.append("")
            lines += self.change_lines(plan)
        lines += reload_lines(plan)
        lines += self.note_lines(plan.notes)
        lines += self.brake_lines(plan.brake_violations())
        lines += self.error_lines(plan.errors)
        if not plan.empty:
            lines += ["", totals(*plan.summary())]
        return "\n".join(lines) + "\n"

    def capped(self, count: int, cap: int) -> int:
        return count if self.view == "detail" else min(count, cap)

    def domain_lines(self, counts: list[DomainCount]) -> list[str]:
        """A line per domain (the first ten by default), then the host-wide changes."""
        domains = [c for c in counts if c.domain is not None]
        host_wide = [c for c in counts if c.domain is None]
        shown = domains[: self.capped(len(domains), self.max_domains)] + host_wide
        width = max(len(c.domain or HOST_WIDE) for c in shown)
        lines = [f"  {printable(c.domain or HOST_WIDE):<{width}}  {_counts(c.add, c.change, c.destroy)}" for c in shown]
        rest = domains[len(shown) - len(host_wide) :]
        if rest:
            lines.insert(
                len(shown) - len(host_wide),
                f"  … {number(len(rest))} more domains: "
                + _counts(sum(c.add for c in rest), sum(c.change for c in rest), sum(c.destroy for c in rest)),
            )
        return lines

    def change_lines(self, plan: Plan) -> list[str]:
        spellings = plan.size_spellings
        if self.view != "default":
            each = entries(plan.changes, None, merge_maildirs=False)
            if self.view == "compact":
                return [self.one_line(entry, spellings) for entry in each]
            return [line for entry in each for line in self.detail(entry, spellings)]
        lines = entries(plan.changes)
        shown = lines[: self.max_entries]
        out = [self.one_line(entry, spellings) for entry in shown]
        rest = lines[len(shown) :]
        if rest:
            out.append(
                f"… {number(len(rest))} more lines standing for {number(sum(e.changes for e in rest))} changes: "
                "--compact lists every change on one line, --detail shows every field"
            )
        elif any(e.grouped for e in shown):
            out.append("(alike changes are grouped: --compact lists every change on one line, --detail every field)")
        return out

    def one_line(self, entry: Entry, spellings: Mapping[int, str]) -> str:
        pairs = entry_pairs(entry, spellings)
        head = self.style(entry_heading(entry), COLOUR[entry.action])
        return f"{head}: {pairs_text(pairs)}" if pairs else head

    def detail(self, entry: Entry, spellings: Mapping[int, str]) -> list[str]:
        head = self.style(entry_heading(entry), COLOUR[entry.action])
        return [head] + [f"    {name}: {value}" for name, value in entry_pairs(entry, spellings, detail=True)]

    def note_lines(self, notes: tuple[str, ...]) -> list[str]:
        if not notes:
            return []
        grouped = [NoteLine(n) for n in notes] if self.view == "detail" else group_notes(notes)
        shown = grouped[: self.capped(len(grouped), self.max_notes)]
        lines = ["", "Notes:"] + [f"  - {note_text(note)}" for note in shown]
        if len(grouped) > len(shown):
            lines.append(f"  … {number(len(grouped) - len(shown))} more notes: --detail shows them all")
        return lines

    def error_lines(self, errors: tuple[str, ...]) -> list[str]:
        """The domains left out of the plan (every one is also on stderr, uncapped)."""
        if not errors:
            return []
        shown = errors[: self.capped(len(errors), self.max_brake)]
        lines = ["", self.style("Not planned (errors):", "red")] + [f"  - {printable(error)}" for error in shown]
        if len(errors) > len(shown):
            lines.append(f"  … {number(len(errors) - len(shown))} more errors: every one is on stderr")
        return lines

    def brake_lines(self, brake: list[str]) -> list[str]:
        if not brake:
            return []
        shown = brake[: self.capped(len(brake), self.max_brake)]
        lines = [""] + [self.style(f"Safety brake: {printable(message)}", "red") for message in shown]
        if len(brake) > len(shown):
            lines.append(self.style(f"Safety brake: … and {number(len(brake) - len(shown))} more domains", "red"))
        return lines


def reload_lines(plan: Plan) -> list[str]:
    """The command apply will run as root after writing (never capped, never grouped away)."""
    command = plan.reload_to_run
    if command is None:
        return []
    return ["", f"{RELOAD_HEADING} {quoted(command)}"]


#: Says what runs and why; the command follows, quoted (it comes from the YAML).
RELOAD_HEADING = "After writing, apply runs as root (qmail.reload, for control/virtualdomains):"


def quoted(text: str) -> str:
    """``text`` between backquotes with control characters escaped: one line, nothing raw."""
    return "`" + printable(text) + "`"


def _counts(add: int, change: int, destroy: int) -> str:
    return f"+{number(add)} ~{number(change)} -{number(destroy)}"
