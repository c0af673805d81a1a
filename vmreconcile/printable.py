"""Text that is safe to show on a terminal: the one escaping helper of every message.

Names, values and file names in messages come from YAML under review, from a tenant's home or
from the command line. Printed raw, an ESC can rewrite the terminal, a CR can hide the start
of a line, a newline can forge a second diagnostic, and a surrogate-escaped byte that is not
UTF-8 makes the printing itself fail. Every diagnostic and every one-line error goes through
`printable`, which writes each character Python does not consider printable as Python writes
it in a ``repr`` (``\\x1b``, ``\\t``, ``\\u202e``), and a byte that is not UTF-8 as ``\\xff``.
Backslashes are left alone: the point is that nothing raw reaches the terminal, not a
reversible encoding.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with every non-printable character (C0, DEL, C1, separators, line breaks of any
    kind ...) written as its ``repr`` escape, and a byte that is not UTF-8 (held as a surrogate
    escape) as ``\\xNN``; printable text (the usual case) is returned as it is."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    if "\udc80" <= ch <= "\udcff":  # the byte surrogateescape decoding kept
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return repr(ch)[1:-1]
