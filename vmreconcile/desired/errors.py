"""Diagnostics of a configuration: ``file:line:col: path: message``, errors and warnings.

Every problem the loader finds becomes one `Diagnostic`, so ``validate`` can print all of them
at once and tests can compare exact lines. `ConfigErrors` is what `load_spec` raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..printable import printable
from .spec import Position

Severity = Literal["error", "warning"]
PathPart = str | int

_PLAIN_SEGMENT = re.compile(r"^[A-Za-z0-9_+-]+$")


def format_path(path: Sequence[PathPart]) -> str:
    """A YAML path people can read: ``domains["mydomain.org"].users.me.hard_quota``.

    Segments with dots or other punctuation are bracketed and quoted, so a domain name is one
    segment; list indexes are ``[n]``.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_SEGMENT.match(part):
            out += ("." if out else "") + part
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{escaped}"]'
    return out or "(top level)"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem (or warning) at one place of one file."""

    position: Position | None
    path: tuple[PathPart, ...]
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        """One line, with every control character escaped (file names and YAML values included)."""
        where = f"{self.position}: " if self.position else ""
        what = f"{format_path(self.path)}: " if self.path else ""
        prefix = "warning: " if self.severity == "warning" else ""
        return printable(f"{where}{prefix}{what}{self.message}")

    def sort_key(self) -> tuple[str, int, int, str]:
        pos = self.position
        return (pos.file, pos.line, pos.column, self.message) if pos else ("", 0, 0, self.message)


def sorted_diagnostics(items: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Unique diagnostics in file, line, column order (stable output for people and tests)."""
    seen: dict[str, Diagnostic] = {}
    for item in items:
        seen.setdefault(str(item), item)
    return sorted(seen.values(), key=Diagnostic.sort_key)


class ConfigErrors(ValueError):
    """The configuration is invalid; ``errors`` lists every problem, ``warnings`` the rest."""

    def __init__(self, errors: Sequence[Diagnostic], warnings: Sequence[Diagnostic] = ()) -> None:
        self.errors = list(errors)
        self.warnings = list(warnings)
        super().__init__("\n".join(str(e) for e in self.errors))
