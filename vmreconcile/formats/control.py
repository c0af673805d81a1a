"""qmail control files: ``rcpthosts``, ``morercpthosts``, ``virtualdomains``, ``locals``, ``me``.

A control file is held as its tuple of lines. Edits touch only the lines vmreconcile owns and
keep every other line (comments, order, entries of other tools) as it was. Lookups follow
VMailMgr's readers exactly (§4.1-§4.3), which differ from qmail's in small ways.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def parse_lines(raw: bytes) -> tuple[str, ...]:
    """The lines of a control file, without their newlines (a last unterminated line kept)."""
    text = raw.decode("utf-8", "surrogateescape")
    if not text:
        return ()
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return tuple(lines)


def render_lines(lines: Iterable[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape")


def split_virtualdomain(line: str) -> tuple[str, str] | None:
    """``key:value`` as VMailMgr reads it: trailing space cut, split at the first ':'.

    None for lines VMailMgr ignores (no ':', or ':' in column 0 such as qmail's ``:user``).
    The key is lowercased; the value is kept as written.
    """
    line = line.rstrip()
    colon = line.find(":")
    if colon <= 0:
        return None
    return line[:colon].lower(), line[colon + 1 :]


def virtualdomains_map(lines: Iterable[str]) -> dict[str, str]:
    """key -> prefix; a key given twice keeps the last line, as VMailMgr's hash table does."""
    mapping: dict[str, str] = {}
    for line in lines:
        pair = split_virtualdomain(line)
        if pair is not None:
            mapping[pair[0]] = pair[1]
    return mapping


def find_virtual(domain: str, mapping: dict[str, str]) -> str | None:
    """The prefix for ``domain``: exact key, then each '.suffix' (§4.2); None if not virtual."""
    domain = domain.lower()
    candidates = [domain] + [domain[i:] for i, ch in enumerate(domain) if ch == "."]
    for candidate in candidates:
        value = mapping.get(candidate)
        if value:
            return value
    return None


def is_local(domain: str, locals_lines: Iterable[str]) -> bool:
    """Exact, case-sensitive match against ``locals`` (trailing whitespace cut), §4.3."""
    return any(line.rstrip() == domain for line in locals_lines)


def set_virtualdomain(lines: tuple[str, ...], key: str, value: str) -> tuple[str, ...]:
    """Make ``key:value`` the effective line for ``key``: rewrite it in place, or append it.

    Every other line that maps the same key is dropped, so the result is unambiguous.
    """
    out: list[str] = []
    placed = False
    for line in lines:
        pair = split_virtualdomain(line)
        if pair is not None and pair[0] == key.lower():
            if not placed:
                out.append(f"{key}:{value}")
                placed = True
            continue
        out.append(line)
    if not placed:
        out.append(f"{key}:{value}")
    return tuple(out)


def remove_virtualdomain(lines: tuple[str, ...], key: str) -> tuple[str, ...]:
    return tuple(line for line in lines if (split_virtualdomain(line) or ("",))[0] != key.lower())


def host_lines(lines: Iterable[str]) -> list[str]:
    """The host names listed in rcpthosts-style files (comments and blanks skipped)."""
    return [line.strip().lower() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def add_line(lines: tuple[str, ...], entry: str) -> tuple[str, ...]:
    """Append ``entry`` unless an equal (case-insensitive) host line is already there."""
    if entry.lower() in host_lines(lines):
        return lines
    return lines + (entry,)


def remove_line(lines: tuple[str, ...], entry: str) -> tuple[str, ...]:
    return tuple(line for line in lines if line.strip().lower() != entry.lower())
