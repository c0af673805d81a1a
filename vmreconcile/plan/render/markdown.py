"""The markdown plan: a pull-request comment (GitHub's limit is 65,536 characters).

Layout: a heading with the totals, the safety brake, a table of counts per domain, a table of
the changes (grouped in the default view), the notes folded in ``<details>``. The whole
comment stays within ``limit`` characters: when the changes do not fit, the comment keeps the
summary and the first changes and ends with a note saying how many were left out and how to
see them. Every value is in a code span, so nothing in a name or a table is read as markup.
"""

from __future__ import annotations

from ...printable import printable
from ..changes import Plan
from ..overview import DomainCount, Entry, NoteLine, domain_counts, entries, group_notes
from ..values import SYMBOL, entry_heading, entry_pairs, note_text, number, pair_text
from .text import HOST_WIDE, NO_CHANGES, NO_CHANGES_WITH_ERRORS, RELOAD_HEADING, View

#: GitHub refuses comments longer than 65,536 characters; a little room is left for a heading
#: a CI script puts above the plan (``## mx1``).
MARKDOWN_LIMIT = 65_000
_ACTION_WORD = {"create": "add", "update": "change", "delete": "destroy"}


class MarkdownRenderer:
    """Renders a `Plan` as markdown of at most ``limit`` characters."""

    max_domains = 25
    max_brake = 20

    def __init__(self, view: View = "default", limit: int = MARKDOWN_LIMIT) -> None:
        self.view = view
        self.limit = limit

    def render(self, plan: Plan) -> str:
        add, change, destroy = plan.summary()
        head = [f"### vmreconcile plan: {number(add)} to add, {number(change)} to change, {number(destroy)} to destroy"]
        if plan.empty:
            head += ["", NO_CHANGES_WITH_ERRORS if plan.errors else NO_CHANGES]
        head += self.brake_lines(plan.brake_violations())
        if plan.reload_to_run is not None:
            head += ["", f"**{RELOAD_HEADING}** {_code(plan.reload_to_run)}"]
        head += self.error_lines(plan.errors)
        if not plan.empty:
            head += self.domain_table(domain_counts(plan.changes))
        return self.fit(plan, head, self.note_lines(plan.notes))

    def fit(self, plan: Plan, head: list[str], notes: list[str]) -> str:
        """``head``, then as many change rows and notes as the limit allows, then what was left out.

        Rows are made only while they fit (a 100,000-row plan is not formatted to be cut); the
        table keeps plan order, so once a row is left out so is every row after it.
        """
        out = "\n".join(head) + "\n"
        table = "\n| | Change | Fields |\n|---|---|---|\n"
        lines = self.lines(plan)
        budget = self.limit - len(out) - len(table) - _LEFT_OUT_ROOM - min(sum(map(len, notes)), self.limit // 8)
        kept: list[str] = []
        omitted_rows = omitted_changes = 0
        for entry in lines:
            row = self.row(entry, plan) if not omitted_rows else ""
            if omitted_rows or len(row) + 1 > budget:
                omitted_rows += 1
                omitted_changes += entry.changes
                continue
            budget -= len(row) + 1
            kept.append(row)
        if kept:
            out += table + "\n".join(kept) + "\n"
        tail = _left_out(omitted_rows, omitted_changes, self.limit) if omitted_rows else ""
        note_budget = self.limit - len(out) - len(tail) - len(_NOTES_OPEN) - len(_NOTES_CLOSE) - _NOTES_LEFT_ROOM
        shown_notes = []
        for index, line in enumerate(notes):
            if len(line) + 1 > note_budget:
                shown_notes.append(f"- … {number(len(notes) - index)} more notes: `--detail` shows them all")
                break
            note_budget -= len(line) + 1
            shown_notes.append(line)
        if shown_notes:
            out += _NOTES_OPEN + "\n".join(shown_notes) + _NOTES_CLOSE
        return out + tail

    def error_lines(self, errors: tuple[str, ...]) -> list[str]:
        """The domains left out of the plan, each in a code span (capped like the brake)."""
        if not errors:
            return []
        shown = errors[: self.max_brake]
        lines = ["", "**Not planned** (errors; apply refuses without `--domain`):", ""]
        lines += [f"- {_code(error)}" for error in shown]
        if len(errors) > len(shown):
            lines.append(f"- … {number(len(errors) - len(shown))} more errors")
        return lines

    def brake_lines(self, brake: list[str]) -> list[str]:
        if not brake:
            return []
        shown = brake if self.view == "detail" else brake[: self.max_brake]
        lines = ["", "**Safety brake** (apply refuses without `--force`):", ""]
        lines += [f"- {_cell(message)}" for message in shown]
        if len(brake) > len(shown):
            lines.append(f"- … and {number(len(brake) - len(shown))} more domains")
        return lines

    def domain_table(self, counts: list[DomainCount]) -> list[str]:
        """A row per domain (the first 25 by default), then the host-wide changes."""
        domains = [c for c in counts if c.domain is not None]
        shown = domains if self.view == "detail" else domains[: self.max_domains]
        lines = ["", "| Domain | Add | Change | Destroy |", "|---|--:|--:|--:|"]
        lines += [f"| {_code(c.domain or '')} | {_numbers(c)} |" for c in shown]
        rest = domains[len(shown) :]
        if rest:
            total = DomainCount(None, *(sum(getattr(c, f) for c in rest) for f in ("add", "change", "destroy")))
            lines.append(f"| … {number(len(rest))} more domains | {_numbers(total)} |")
        lines += [f"| {HOST_WIDE} | {_numbers(c)} |" for c in counts if c.domain is None]
        return lines

    def lines(self, plan: Plan) -> list[Entry]:
        """The overview lines: grouped in the default view, else one per change."""
        if self.view == "default":
            return entries(plan.changes)
        return entries(plan.changes, None, merge_maildirs=False)

    def row(self, entry: Entry, plan: Plan) -> str:
        heading = entry_heading(entry)[2:]  # without the symbol: it has its own column
        pairs = entry_pairs(entry, plan.size_spellings, self.view == "detail")
        fields = "<br>".join(_code(pair_text(name, value)) for name, value in pairs)
        return f"| {SYMBOL[entry.action]} {_ACTION_WORD[entry.action]} | {_code(heading)} | {fields} |"

    def note_lines(self, notes: tuple[str, ...]) -> list[str]:
        grouped = [NoteLine(n) for n in notes] if self.view == "detail" else group_notes(notes)
        return [f"- {_cell(note_text(note))}" for note in grouped]


_NOTES_OPEN = "\n<details><summary>Notes</summary>\n\n"
_NOTES_CLOSE = "\n\n</details>\n"
_NOTES_LEFT_ROOM = 80
_LEFT_OUT_ROOM = 400


def _numbers(count: DomainCount) -> str:
    return f"{number(count.add)} | {number(count.change)} | {number(count.destroy)}"


def _left_out(rows: int, changes: int, limit: int) -> str:
    return (
        f"\n**{number(changes)} more changes are not shown** ({number(rows)} more lines): this comment is kept "
        f"under {number(limit)} characters. See every change with `vmreconcile plan --compact` (one line each) "
        "or `vmreconcile plan --detail` (every field), or as data with `--format json`.\n"
    )


def _cell(text: str) -> str:
    """Text for a table cell or a list item: pipes escaped, no line breaks, no raw HTML, nothing
    a terminal or a browser could act on (`printable`)."""
    return (
        printable(text)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def _code(text: str) -> str:
    """``text`` as a code span (no markup inside) that survives a table cell."""
    text = printable(text).replace("|", "\\|")
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
