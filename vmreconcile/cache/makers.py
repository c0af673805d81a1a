"""Objects rebuilt from cached tuples, fast: a warm plan of 100,000 entries makes them all again.

``Record.from_values`` loops over the field names; a dataclass's ``__init__`` checks nothing
but costs as much. A maker here is one generated function per class that creates the object
and stores each slot through its descriptor, unrolled: about a third less time per object,
which is a tenth of a second per 100,000 entries. It skips ``__init__``, so it is only for
values that were made by ``__init__`` before and checked when loaded (`cache/` modules check
the shape of everything they load).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def slot_maker(cls: type, fields: tuple[str, ...]) -> Callable[[tuple[Any, ...]], Any]:
    """``make(values)`` -> a ``cls`` whose slots ``fields`` hold ``values`` (a tuple in that order)."""
    setters = {f"set{i}": getattr(cls, name).__set__ for i, name in enumerate(fields)}
    body = "".join(f"    set{i}(obj, values[{i}])\n" for i in range(len(fields)))
    source = f"def make(values):\n    obj = new(cls)\n{body}    return obj\n"
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls, **setters}
    exec(compile(source, f"<maker of {cls.__name__}>", "exec"), namespace)
    return namespace["make"]
