"""Entry point of the runtime launchers written by ``vmreconcile install-runtime``.

A launcher is ``#!<python> -IS`` plus three lines: it puts the world-readable runtime copy
first on ``sys.path`` and calls `run` with the program name and the config root baked in at
install time (never taken from the environment: these programs run as root on hostile input).
"""

from __future__ import annotations

import os
import sys

from ..host import Host

PROGRAMS = ("checkvpw", "authvmailmgr", "authpipe", "vauthenticate", "vdeliver", "vauthd", "runtime-selftest")
#: Programs whose module is not ``vmreconcile.runtime.<program>``.
MODULES = {"vauthd": "dovecot.vauthd"}


def run(program: str, root: str | None) -> None:
    """Import the program's module, call ``main(argv, host)`` and exit with its status."""
    if program not in PROGRAMS:
        sys.stderr.write(f"vmreconcile runtime: unknown program {program!r}\n")
        raise SystemExit(111)
    # __import__ rather than importlib.import_module: importlib costs ~0.5 ms (warnings) per start.
    module = __import__("vmreconcile.runtime." + MODULES.get(program, program.replace("-", "_")), fromlist=["main"])
    code = module.main(sys.argv, Host(root))
    # Skip the interpreter's teardown (module and GC finalisation, ~2 ms per login or delivery):
    # every runtime program closes its own files; only the standard streams are buffered here.
    # A stream that cannot be flushed (a closed pipe) must not change the status: a delivery
    # that is already in new/ must never turn into a retry.
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib would cost an import on every login
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code if isinstance(code, int) and 0 <= code <= 255 else 111)
