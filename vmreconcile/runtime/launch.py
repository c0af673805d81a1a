"""Entry point of the runtime launchers written by ``vmreconcile install-runtime``.

A launcher is ``#!<python> -IS`` plus three lines: it puts the world-readable runtime copy
first on ``sys.path`` and calls `run` with the program name and the config root baked in at
install time (never taken from the environment: these programs run as root on hostile input).
"""

from __future__ import annotations

import os
import sys

from ..host import Host

#: Program name -> the module whose ``main(argv, host)`` it runs. One line per program: a new
#: runtime program is its module plus one line here (``install-runtime`` writes a launcher for
#: every name but the selftest).
PROGRAMS: dict[str, str] = {
    "checkvpw": "vmreconcile.runtime.login.checkvpw",
    "authvmailmgr": "vmreconcile.runtime.login.authvmailmgr",
    "authpipe": "vmreconcile.runtime.courier.authpipe",
    "vauthenticate": "vmreconcile.runtime.login.vauthenticate",
    "vdeliver": "vmreconcile.runtime.delivery.vdeliver",
    "vauthd": "vmreconcile.runtime.dovecot.vauthd",
    "runtime-selftest": "vmreconcile.runtime.selftest",
}


def run(program: str, root: str | None) -> None:
    """Import the program's module, call ``main(argv, host)`` and exit with its status."""
    module_name = PROGRAMS.get(program)
    if module_name is None:
        sys.stderr.write(f"vmreconcile runtime: unknown program {program!r}\n")
        raise SystemExit(111)
    # __import__ rather than importlib.import_module: importlib costs ~0.5 ms (warnings) per start.
    module = __import__(module_name, fromlist=["main"])
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
