"""Parse ``qmail-local-deliveries.txt`` (real qmail-local + VMailMgr runs) into test cases.

Each case gives the qmail-local command line (so the EXT), the exit code, vdeliver's own
stdout lines (qmail-local's ``did 0+0+1`` is its own), the maildir file written (path and
bytes) and what qmail-queue got. qmail-queue adds a ``Received:`` line and the ``u``/``p``
envelope items itself, so those are removed: what is left is exactly what vdeliver sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tests.conftest import FIXTURES

DELIVERIES = FIXTURES / "qmail-local-deliveries.txt"


@dataclass
class OracleCase:
    name: str
    ext: str
    sender: str
    message_file: str
    dry_run: bool
    exit: int = 0
    stdout: list[str] = field(default_factory=list)
    mailbox_path: str | None = None
    mailbox: bytes | None = None
    queued_message: bytes | None = None
    queued_envelope: bytes | None = None


def _envelope(text: str) -> bytes:
    """``u1008|p27738|Fa|Tb|`` (the queue's todo file, NUL shown as ``|``) -> what vdeliver wrote."""
    items = [item for item in text.split("|") if item and item[0] not in "up"]
    return b"".join(item.encode() + b"\0" for item in items) + b"\0"


def load_cases() -> list[OracleCase]:
    cases: list[OracleCase] = []
    case: OracleCase | None = None
    block: list[str] | None = None
    target = ""

    def flush() -> None:
        assert case is not None and block is not None
        data = "".join(item + "\n" for item in block).encode()
        if target == "mailbox":
            case.mailbox = data
        else:
            received, rest = data.split(b"\n", 1)
            assert received.startswith(b"Received: (qmail ")
            case.queued_message = rest

    for line in DELIVERIES.read_text().splitlines():
        if line.startswith("  |"):
            assert block is not None
            block.append(line[4:])
            continue
        if block is not None:
            flush()
            block = None
        if line.startswith("=== case: "):
            cases.append(OracleCase(line[len("=== case: ") :], "", "", "", False))
            case = cases[-1]
            continue
        assert case is not None
        if line.startswith("command "):
            args = line.split("): ", 1)[1].split()
            case.dry_run = args[1] == "-n"
            if case.dry_run:
                args.pop(1)
            case.ext, case.sender = args[5], args[7]
            case.message_file = args[-1]
        elif line.startswith("stdout: "):
            text = line[len("stdout: ") :]
            if not re.fullmatch(r"did \d+\+\d+\+\d+|program .*", text):
                case.stdout.append(text)
        elif line.startswith("exit: "):
            case.exit = int(line[len("exit: ") :])
        elif line.startswith("new file in home: "):
            case.mailbox_path = line[len("new file in home: ") :].rsplit("/new/", 1)[0]
            block, target = [], "mailbox"
        elif line.startswith("queued message"):
            block, target = [], "queue"
        elif line.startswith("queued envelope"):
            case.queued_envelope = _envelope(line.split(": ", 1)[1])
    if block is not None:
        flush()
    return cases
