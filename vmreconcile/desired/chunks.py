"""A configuration file cut into its domains, by lines, for `incremental` (pure).

A fleet's configuration is one ``domains:`` mapping of a thousand entries, and a change touches
one of them. This module finds, in the bytes of a file, the line of each domain's key and the
lines up to the next one (a `Chunk`), so that only the chunks that changed need to be parsed
and checked again. It only proposes: the parser confirms, every time, that the domains it found
start exactly at these lines (`incremental` refuses the cut otherwise).

The cut is made only in files of a plain shape, the one ``vmreconcile export`` writes and
people write by hand (anything else returns None and is checked whole, as without a cache):

* one ``domains:`` line at column 0 with nothing after the colon but a comment;
* below it, up to the next line with something at column 0 (the next top-level key) or the
  end of the file, every line is blank, a comment, or indented: each line at the smallest
  indentation is a domain key (``  name:``, a plain name) and nothing is less indented;
* no tab in that part, and no carriage return or other Unicode line break anywhere (libyaml
  counts those as line ends: the lines here are ``\\n``-separated).

In a file of that shape every domain's entry is on its own lines, and what ends it (the next
key at the same indentation, a column-0 line, the end of the file) ends it the same way
whatever the other entries are. `reduced` keeps some chunks and turns the others into comment
lines (``#`` at column 0), so line numbers, and with them every position in a diagnostic,
stay those of the real file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Line breaks other than ``\n`` that libyaml honours (CR, NEL, LINE and PARAGRAPH SEPARATOR).
_OTHER_BREAKS = (b"\r", b"\xc2\x85", b"\xe2\x80\xa8", b"\xe2\x80\xa9")
# The patterns below match a line by the newline before it (the text gets one in front): a
# literal first character lets the regex engine skip ahead instead of trying every position.
_DOMAINS_LINE = re.compile(rb"\ndomains:[ ]*(?:#[^\n]*)?(?=\n|\Z)")
#: The first line after the domains with something at column 0 (not a comment).
_COLUMN_ZERO = re.compile(rb"\n[^ #\n]")
_FIRST_CONTENT = re.compile(rb"\n( *)[^ #\n]")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One domain's lines: its key as written, the 0-based line of the key, the bytes."""

    key: str
    line: int
    text: bytes

    @property
    def newlines(self) -> int:
        return self.text.count(b"\n")


@dataclass(frozen=True, slots=True)
class Split:
    """A file as ``before`` (up to the first domain key), the `Chunk`s, and ``after`` (from the
    first column-0 line after the domains). A file without a ``domains:`` line is all
    ``before`` (its ``domains_span`` is None)."""

    before: bytes
    chunks: tuple[Chunk, ...]
    after: bytes
    #: byte span of the ``domains:`` line in ``before``
    domains_span: tuple[int, int] | None
    #: 0-based line of ``domains:`` and of the first line of ``after``
    domains_line: int
    after_line: int
    indent: int


def split_config(raw: bytes) -> Split | None:
    """The `Split` of one file's bytes, or None when it is not of the plain shape (module doc)."""
    if any(bad in raw for bad in _OTHER_BREAKS):
        return None
    text = b"\n" + raw  # offsets in text are offsets in raw + 1; a match starts at its line's newline
    found = _DOMAINS_LINE.findall(text)
    if not found:
        return Split(raw, (), b"", None, 0, 0, 0)
    if len(found) > 1:
        return None
    domains = _DOMAINS_LINE.search(text)
    assert domains is not None
    start = domains.end()  # the newline that ends the domains line (the region starts after it)
    if start >= len(text):
        return None
    column_zero = _COLUMN_ZERO.search(text, start)
    end = column_zero.start() if column_zero else len(text)  # at the newline before that line
    region = text[start:end]  # from the newline ending the domains line to the one before `after`
    if b"\t" in region:
        return None
    first = _FIRST_CONTENT.search(region)
    if first is None:
        return None
    indent = len(first.group(1))
    if indent == 0:
        return None
    if indent > 1 and re.search(rb"\n {0,%d}[^ #\n]" % (indent - 1), region):
        return None  # something less indented than the domain keys (column 0 ended the region)
    at_indent = re.compile(rb"\n {%d}[^ #\n][^\n]*" % indent)
    key_line = re.compile(rb"\n {%d}([A-Za-z0-9_][A-Za-z0-9_.-]*):(?: [^\n]*)?" % indent)
    domains_line = raw.count(b"\n", 0, domains.start())
    line = domains_line
    offsets: list[tuple[int, int, str]] = []  # (offset of the key line in raw, its line, key)
    last = 0
    for match in at_indent.finditer(region):
        key = key_line.fullmatch(match.group(0))
        if key is None:
            return None
        line += region.count(b"\n", last, match.start() + 1)
        last = match.start() + 1
        offsets.append((start + match.start(), line, key.group(1).decode("ascii")))
    if not offsets or offsets[0][0] != start + first.start():
        return None
    bounds = [begin for begin, _, _ in offsets] + [end]
    chunks = tuple(Chunk(key, line, raw[begin : bounds[i + 1]]) for i, (begin, line, key) in enumerate(offsets))
    return Split(
        before=raw[: offsets[0][0]],
        chunks=chunks,
        after=raw[end:],
        domains_span=(domains.start(), domains.end() - 1),
        domains_line=domains_line,
        after_line=domains_line + 1 + region.count(b"\n"),
        indent=indent,
    )


def reduced(split: Split, present: set[int]) -> bytes:
    """The file with only the chunks numbered in ``present``: every other chunk's lines become
    ``#`` (comments), so every line keeps its number. With no chunk left the domains line reads
    ``domains: {}``."""
    before = split.before
    if not present and split.domains_span is not None:
        begin, end = split.domains_span
        before = before[:begin] + b"domains: {}" + before[end:]
    parts = [before]
    for index, chunk in enumerate(split.chunks):
        if index in present:
            parts.append(chunk.text)
        else:
            parts.append(b"#\n" * chunk.newlines + (b"" if chunk.text.endswith(b"\n") else b"#"))
    parts.append(split.after)
    return b"".join(parts)
