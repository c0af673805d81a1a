"""Crash injection for the crash-safety tests: ``VMRECONCILE_CRASH_AT=N`` SIGKILLs at checkpoint N.

``VMRECONCILE_CRASH_AT=LABEL`` (e.g. ``passwd.cdb: half written``) kills at that checkpoint.
``VMRECONCILE_CRASH_SIGNAL=TERM`` (or ``INT``) sends that signal instead of SIGKILL: the
interruption tests check that apply then ends in one line with 128 + the signal.

Every step of a write that could be interrupted by a power cut or a kill calls `checkpoint`.
Without the variable this is one dictionary lookup. The tests run an apply with N = 1, 2, ...
and check after each kill that every table is old or new and that the next apply converges.
"""

from __future__ import annotations

import os
import signal

_passed = 0


def checkpoint(label: str) -> None:
    """Count one checkpoint; kill this process with SIGKILL when it is the requested one."""
    global _passed
    _passed += 1
    target = os.environ.get("VMRECONCILE_CRASH_AT")
    if target and (int(target) == _passed if target.isdigit() else target == label):
        name = os.environ.get("VMRECONCILE_CRASH_SIGNAL", "KILL")
        os.kill(os.getpid(), signal.Signals["SIG" + name])


def passed() -> int:
    """How many checkpoints this process has passed (tests size their crash loop with it)."""
    return _passed


def reset() -> None:
    global _passed
    _passed = 0
