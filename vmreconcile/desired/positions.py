"""Where a YAML path was written: walk the positioned values down to a ``file:line:col``."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import PathPart
from .spec import Position
from .yamlread import YList, YMap


def locate(doc: object, path: Sequence[PathPart], at_key: bool = False) -> Position | None:
    """The position of the value at ``path`` (or of its key with ``at_key``).

    Values that are mappings or lists (block style) point at their key, which is the line a
    person looks for; scalars point at themselves. Missing parts stop at the nearest parent.
    """
    node = doc
    best: Position | None = node.position if isinstance(node, (YMap, YList)) else None
    for index, part in enumerate(path):
        last = index == len(path) - 1
        if isinstance(node, YMap) and isinstance(part, str) and part in node:
            child = node[part]
            if last and at_key:
                return node.key_position(part)
            if isinstance(child, (YMap, YList)) and not _is_flow(node, part, child):
                best = node.key_position(part)
            else:
                best = node.value_position(part)
            node = child
        elif isinstance(node, YList) and isinstance(part, int) and 0 <= part < len(node):
            best = node.item_position(part)
            node = node[part]
        else:
            break
    return best


def _is_flow(parent: YMap, key: str, child: YMap | YList) -> bool:
    """True when ``child`` starts on its key's line (``key: [a, b]``, ``key: {a: 1}``)."""
    kmark = parent.keymarks.get(key)
    return kmark is not None and child.mark.line == kmark.line
