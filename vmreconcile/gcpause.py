"""Pause the cyclic garbage collector while millions of small acyclic objects are built.

Loading a 100,000-user configuration and grouping a 200,000-change plan make no reference
cycles, but each allocation burst triggers full collections that walk everything built so far:
about a third of the loading time, half of the grouping time. Both use this one pause.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No collection inside the block; the collector is left as it was found (on or off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
