"""qmail control files: ``rcpthosts``, ``morercpthosts``, ``virtualdomains``, ``locals``, ``me``.

A control file is held as its tuple of lines. Edits touch only the lines vmreconcile owns and
keep every other line (comments, order, entries of other tools) as it was. Lookups follow
VMailMgr's readers exactly ([compat: control-files]), which differ from qmail's in small ways.

`CONTROL_FILES` is the one list of these files: what each one holds, which of its lines
vmreconcile owns and what must happen after it is written. Live reading, resolve, diff, apply,
export and the show schema all take the file names and rules from there.
"""

from __future__ import annotations

from ..model import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

#: Shapes of control files: ``key:value`` lines (``virtualdomains``), one host per line.
MAP, HOSTS = "map", "hosts"
#: What apply does after writing a file: nothing, ``qmail-newmrh`` (qmail-smtpd reads
#: ``morercpthosts`` through its cdb), or the configured reload command (qmail-send rereads
#: ``virtualdomains`` on HUP).
NOTHING, NEWMRH, RELOAD = "", "qmail-newmrh", "reload"


class ControlFile(Record):
    """One qmail control file as vmreconcile treats it.

    ``shape`` is `MAP` or `HOSTS` (how a line's key is read: `line_key`). ``managed`` files
    are edited: vmreconcile owns exactly the lines whose key is a name of a domain it manages
    (the domain's ``virtualdomains_keys``), every other line is kept; the others are only read.
    ``rank`` orders the managed files in a plan (routing first). ``after_write`` is `NOTHING`,
    `NEWMRH` or `RELOAD`.
    """

    __slots__ = ("name", "shape", "managed", "rank", "after_write")
    _fields = __slots__
    _defaults = {"managed": False, "rank": 0, "after_write": NOTHING}
    name: str
    shape: str
    managed: bool
    rank: int
    after_write: str


RCPTHOSTS, MORERCPTHOSTS, VIRTUALDOMAINS = "rcpthosts", "morercpthosts", "virtualdomains"

#: Every control file vmreconcile reads, in the order it reads them (show JSON keeps it).
CONTROL_FILES: dict[str, ControlFile] = {
    f.name: f
    for f in (
        ControlFile(RCPTHOSTS, HOSTS, managed=True, rank=2),
        ControlFile(MORERCPTHOSTS, HOSTS, managed=True, rank=3, after_write=NEWMRH),
        ControlFile(VIRTUALDOMAINS, MAP, managed=True, rank=1, after_write=RELOAD),
        ControlFile("locals", HOSTS),
        ControlFile("me", HOSTS),
    )
}
#: The files vmreconcile edits, in plan order.
MANAGED_FILES = tuple(sorted((f for f in CONTROL_FILES.values() if f.managed), key=lambda f: f.rank))
#: The files a domain's names may be listed in for qmail-smtpd (``rcpthosts_file``).
RCPTHOSTS_FILES = tuple(f.name for f in MANAGED_FILES if f.shape == HOSTS)


def line_key(shape: str, line: str) -> str | None:
    """The key a line of a file of ``shape`` owns (lowercased), or None for comments, blanks and
    lines VMailMgr ignores."""
    if shape == MAP:
        pair = owned_virtualdomain(line)
        return pair[0] if pair else None
    stripped = line.strip().lower()
    return stripped if stripped and not stripped.startswith("#") else None


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


def owned_virtualdomain(line: str) -> tuple[str, str] | None:
    """`split_virtualdomain` for the management side: also None for a comment line (``#`` as its
    first non-blank character). VMailMgr has no comments and reads ``# a: b`` as the key
    ``# a``, which no domain can match; vmreconcile neither plans such a line as a domain nor
    ever removes or rewrites it."""
    if line.lstrip().startswith("#"):
        return None
    return split_virtualdomain(line)


def virtualdomains_map(lines: Iterable[str]) -> dict[str, str]:
    """key -> prefix; a key given twice keeps the last line, as VMailMgr's hash table does."""
    mapping: dict[str, str] = {}
    for line in lines:
        pair = split_virtualdomain(line)
        if pair is not None:
            mapping[pair[0]] = pair[1]
    return mapping


def find_virtual(domain: str, mapping: dict[str, str]) -> str | None:
    """The prefix for ``domain``: exact key, then each '.suffix'; None if not virtual."""
    domain = domain.lower()
    candidates = [domain] + [domain[i:] for i, ch in enumerate(domain) if ch == "."]
    for candidate in candidates:
        value = mapping.get(candidate)
        if value:
            return value
    return None


def is_local(domain: str, locals_lines: Iterable[str]) -> bool:
    """Exact, case-sensitive match against ``locals`` (trailing whitespace cut)."""
    return any(line.rstrip() == domain for line in locals_lines)


def set_virtualdomain(lines: tuple[str, ...], key: str, value: str) -> tuple[str, ...]:
    """Make ``key:value`` the effective line for ``key``: rewrite it in place, or append it.

    Every other line that maps the same key is dropped, so the result is unambiguous.
    """
    out: list[str] = []
    placed = False
    for line in lines:
        pair = owned_virtualdomain(line)
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
    return tuple(line for line in lines if (owned_virtualdomain(line) or ("",))[0] != key.lower())


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
