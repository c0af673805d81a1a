"""One line of progress on a terminal while a long plan is made (a fleet of 1,000 domains).

Shown on stderr only when stderr is a terminal, and only once the work has taken longer than
`DELAY` seconds: a plan that is done in a second prints nothing, and a plan piped into a file
or run from CI never gets a progress line in its output. The line is rewritten in place
(``\\r``) at most `REFRESH` times a second and erased when the work is done, so what follows
(the plan itself, on stdout) starts on a clean line.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Seconds of work before anything is shown.
DELAY = 1.0
#: Seconds between two updates of the line.
REFRESH = 0.1


class Progress:
    """``progress.stage("reading the host")`` and ``progress(done, total)``; `finish` erases."""

    def __init__(self, stream: TextIO | None = None, *, delay: float = DELAY, clock=time.monotonic) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = _is_terminal(self.stream)
        self.delay = delay
        self.clock = clock
        self.started = clock()
        self.label = ""
        self.shown = False
        self._last = 0.0

    def stage(self, label: str) -> None:
        """Name what is being done now (shown with the next update)."""
        self.label = label
        self._show(label)

    def __call__(self, done: int, total: int) -> None:
        """``done`` of ``total`` items of the current stage are finished."""
        if self.enabled:
            self._show(f"{self.label}: {done:,}/{total:,}", final=done >= total)

    def finish(self) -> None:
        """Erase the line (if one was shown)."""
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False

    def _show(self, text: str, final: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if now - self.started < self.delay or (not final and now - self._last < REFRESH):
            return
        self._last = now
        self.stream.write(f"\r\033[K{text}")
        self.stream.flush()
        self.shown = True


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
