"""Forwarding through ``<qmail-root>/bin/qmail-queue`` with VMailMgr's exact envelope [compat: vdeliver].

qmail-queue reads the message on fd 0 and then the envelope on fd 1:
``F<sender>\\0`` then ``T<recipient>\\0`` per forward and a final ``\\0``. A forward without
``@`` gets ``@$HOST``; one ending in ``@`` gets the first line of ``control/me``. The message is
only ``$DTLINE`` (unless ``-d``) and the original bytes: no ``Return-Path`` or ``From `` line,
and no header is rewritten (it is qmail-queue, not qmail-inject).

The child is started with ``posix_spawn`` (no ``subprocess`` import: vdeliver runs once per
message and its start-up time matters), with SIGPIPE back to its default disposition.
"""

from __future__ import annotations

import os

from ...tables import write_all
from ..process import child_default_signals
from .errors import temporary
from .message import Message


def read_me(qmail_root: str) -> str:
    """The first line of ``control/me``, unstripped; "" when missing or empty."""
    try:
        with open(os.path.join(qmail_root, "control", "me"), "rb") as fp:
            first = fp.readline(4096)
    except OSError:
        return ""
    return first.rstrip(b"\n").decode("utf-8", "surrogateescape")


def recipient(address: str, host: str, qmail_root: str) -> str:
    """One forward as qmail-queue gets it (``name`` -> ``name@HOST``, ``name@`` -> ``name@me``)."""
    if "@" not in address:
        return f"{address}@{host}"
    if address.endswith("@"):
        me = read_me(qmail_root)
        if not me:
            raise temporary("control/me is empty!")
        return address + me
    return address


def envelope(sender: str, forwards: tuple[str, ...], host: str, qmail_root: str) -> bytes:
    """The whole envelope: ``F<sender>\\0``, ``T<addr>\\0`` per forward, then ``\\0``."""
    parts = [b"F", sender.encode("utf-8", "surrogateescape"), b"\0"]
    for address in forwards:
        parts += [b"T", recipient(address, host, qmail_root).encode("utf-8", "surrogateescape"), b"\0"]
    parts.append(b"\0")
    return b"".join(parts)


def child_environment(sender: str) -> dict[str, str]:
    """Our environment plus ``QMAILUSER``/``QMAILHOST`` from ``SENDER`` (qmail-queue ignores them)."""
    env = dict(os.environ)
    at = sender.find("@")
    if at > 0:
        env["QMAILUSER"], env["QMAILHOST"] = sender[:at], sender[at + 1 :]
    return env


def queue(qmail_queue: str, message: Message, dtline: bytes, env_bytes: bytes, sender: str) -> None:
    """Hand the message to qmail-queue; return only if it exited 0, else raise (exit 111)."""
    try:
        msg_read, msg_write = os.pipe()
    except OSError:
        raise temporary("System call to 'pipe' failed.") from None
    try:
        env_read, env_write = os.pipe()
    except OSError:
        os.close(msg_read)
        os.close(msg_write)
        raise temporary("System call to 'pipe' failed.") from None
    try:
        pid = os.posix_spawn(
            qmail_queue,
            [qmail_queue],
            child_environment(sender),
            file_actions=[(os.POSIX_SPAWN_DUP2, msg_read, 0), (os.POSIX_SPAWN_DUP2, env_read, 1)],
            setsigdef=child_default_signals(),
        )
    except OSError:
        for fd in (msg_read, msg_write, env_read, env_write):
            os.close(fd)
        raise temporary("Exec of qmail-queue failed.") from None
    os.close(msg_read)
    os.close(env_read)
    problem = ""
    try:
        if dtline:
            write_all(msg_write, dtline)
        message.copy_to(msg_write)
    except OSError:
        problem = "Error writing to pipe"
    finally:
        os.close(msg_write)
    try:
        if not problem:
            write_all(env_write, env_bytes)
    except OSError:
        problem = "Error sending envelope to pipe"
    finally:
        os.close(env_write)
    try:
        _, status = os.waitpid(pid, 0)
    except OSError:
        raise temporary("System call to 'waitpid' failed.") from None
    if problem:
        raise temporary(problem)
    if os.WIFSIGNALED(status):
        raise temporary("qmail-queue crashed!")
    if os.waitstatus_to_exitcode(status) != 0:
        raise temporary("qmail-queue exited with an error!")
