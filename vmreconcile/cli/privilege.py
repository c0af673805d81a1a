"""One clear line for "this needs root", instead of a raw ``[Errno 13] Permission denied: ...``.

Without ``--root`` vmreconcile works on the real host: the lock in ``/run/vmreconcile``, the
history in ``/var/lib/vmreconcile``, ``/etc/vmailmgr``, qmail's control files and the base
users' homes (0700) all need root. Every command maps a permission error to one line that
says so and points at ``--root DIR``, which runs the same command on a throwaway tree the
caller owns (``vmreconcile demo DIR`` builds one).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..host import Host
from .common import fail


def privilege_message(exc: PermissionError, command: str | None = None, host: Host | None = None) -> str:
    """The one line for a permission error (never the errno text)."""
    where = f" {exc.filename}" if exc.filename else ""
    doing = f"{command} " if command else ""
    if host is not None and host.is_rooted:
        return f"{doing}cannot access{where}: permission denied inside the --root tree; make it yours, or run as root"
    return (
        f"{doing}needs root: cannot access{where} (permission denied). Run it as root, "
        "or try it on a throwaway tree with --root DIR (vmreconcile demo DIR makes one)"
    )


def denied_text(exc: BaseException, command: str | None = None, host: Host | None = None) -> str | None:
    """`privilege_message` for a permission error, including the one-line errors of the live
    reader (``~base/passwd.cdb: Permission denied``); None for any other error."""
    if isinstance(exc, PermissionError):
        return privilege_message(exc, command, host)
    text = str(exc)
    if isinstance(exc, OSError) and exc.errno is None and text.endswith(": Permission denied"):
        path = text.removesuffix(": Permission denied")
        return privilege_message(PermissionError(13, "Permission denied", path), command, host)
    return None


def live_error_text(exc: BaseException, command: str | None = None, host: Host | None = None) -> str:
    """The one line for an error reading the live host."""
    return denied_text(exc, command, host) or str(exc)


@contextmanager
def privilege_errors(command: str, host: Host | None = None) -> Iterator[None]:
    """Turn a `PermissionError` inside the block into `privilege_message` and exit 1."""
    try:
        yield
    except PermissionError as exc:
        raise fail(privilege_message(exc, command, host)) from None
