"""Safe YAML to plain values that remember where each key and value was written.

PyYAML's composer is slow (about 8 s for a 100,000-user file here) and its constructor keeps
the last of two equal keys without a word. This reader walks libyaml's event stream instead
and builds dicts and lists directly, recording ``(file, line, column)`` for every key and
value, refusing duplicate keys, unknown tags and merge keys, and capping alias expansion
(billion laughs). Only the safe YAML types exist: str, int, float, bool, None; timestamps stay
the text they were written as (`units` parses them, in UTC).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode

from .errors import Diagnostic
from .spec import Position

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

#: Expanded size (scalars + collections) above which a document is refused.
MAX_NODES = 20_000_000

_STR = "tag:yaml.org,2002:str"
_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "!",
}
_resolver = yaml.resolver.Resolver()
_constructor = SafeConstructor()
_FIRST_CHARS = frozenset(k for k in yaml.resolver.Resolver.yaml_implicit_resolvers if k)


class YMap(dict):
    """A mapping that remembers where it, each key and each value were written.

    libyaml's marks are kept as they are (0-based) and turned into a `Position` only when a
    diagnostic needs one: `key_position` / `value_position`.
    """

    __slots__ = ("mark", "file", "keymarks", "valmarks", "keyfiles")

    def __init__(self, mark: Any, file: str) -> None:
        super().__init__()
        self.mark, self.file = mark, file
        self.keymarks: dict[str, Any] = {}
        self.valmarks: dict[str, Any] = {}
        #: For maps merged from several files: the file each key came from.
        self.keyfiles: dict[str, str] | None = None

    @property
    def position(self) -> Position:
        return _pos(self.file, self.mark)

    def file_of(self, key: str) -> str:
        return self.keyfiles.get(key, self.file) if self.keyfiles else self.file

    def key_position(self, key: str) -> Position:
        mark = self.keymarks.get(key)
        return _pos(self.file_of(key), mark) if mark is not None else self.position

    def value_position(self, key: str) -> Position:
        mark = self.valmarks.get(key)
        return _pos(self.file_of(key), mark) if mark is not None else self.position

    def put(self, key: str, value: object, source: YMap) -> None:
        """Copy ``key`` from ``source`` with its positions (merging files)."""
        self[key] = value
        self.keymarks[key] = source.keymarks.get(key)
        self.valmarks[key] = source.valmarks.get(key)
        if self.keyfiles is None:
            self.keyfiles = {}
        self.keyfiles[key] = source.file_of(key)


class YList(list):
    """A sequence that remembers where it and each item were written."""

    __slots__ = ("mark", "file", "itemmarks")

    def __init__(self, mark: Any, file: str) -> None:
        super().__init__()
        self.mark, self.file = mark, file
        self.itemmarks: list[Any] = []

    @property
    def position(self) -> Position:
        return _pos(self.file, self.mark)

    def item_position(self, index: int) -> Position:
        if 0 <= index < len(self.itemmarks):
            return _pos(self.file, self.itemmarks[index])
        return self.position


class _Problem(Exception):
    def __init__(self, position: Position, message: str) -> None:
        self.position, self.message = position, message


def _scalar(event: Any, name: str) -> object:
    """The value of a tagged scalar or a plain one that may not be a string (YAML 1.1 safe rules).

    Timestamps are kept as the text they were written as.
    """
    value = event.value
    tag = event.tag
    pos = _pos(name, event.start_mark)
    if tag is not None and tag not in _PLAIN_TAGS:
        raise _Problem(pos, f"unsupported YAML tag {tag!r}: only plain YAML values are allowed")
    if tag == "!" or tag == _STR or not event.implicit[0]:
        if tag is not None and tag not in (_STR, "!"):
            return _construct(tag, value, pos)
        return value
    if not value:
        return None
    if value[0] not in _FIRST_CHARS:
        return value
    resolved = _resolver.resolve(ScalarNode, value, (True, False))
    if resolved == _STR:
        return value
    return _construct(resolved, value, pos)


def _construct(tag: str, value: str, pos: Position) -> object:
    if tag == "tag:yaml.org,2002:timestamp":
        return value
    if tag == "tag:yaml.org,2002:merge":
        raise _Problem(pos, "merge keys (<<) are not supported; write the values out")
    node = ScalarNode(tag, value)
    try:
        if tag == "tag:yaml.org,2002:int":
            return _constructor.construct_yaml_int(node)
        if tag == "tag:yaml.org,2002:float":
            return _constructor.construct_yaml_float(node)
        if tag == "tag:yaml.org,2002:bool":
            return _constructor.construct_yaml_bool(node)
        if tag == "tag:yaml.org,2002:null":
            return None
    except (ValueError, yaml.YAMLError):
        raise _Problem(pos, f"{value!r} is not a valid {tag.rsplit(':', 1)[-1]}") from None
    return value


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _Problem(Position(name, line, column), "the file is not valid UTF-8") from None


def read_yaml(raw: bytes, name: str) -> tuple[object, list[Diagnostic]]:
    """Parse one YAML file's bytes into ``(value, problems)``.

    ``value`` is a `YMap`, `YList`, scalar, or None for an empty file. A syntax error stops
    the file (``value`` None); a duplicate key is reported and its later value dropped, so
    the rest of the file is still checked.
    """
    try:
        text = _decode(raw, name)
        duplicates: list[Diagnostic] = []
        return _build(text, name, duplicates), duplicates
    except _Problem as problem:
        return None, [Diagnostic(problem.position, (), problem.message)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(name, mark.line + 1, mark.column + 1) if mark else Position(name, 1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        return None, [Diagnostic(pos, (), f"YAML syntax error: {what}")]
    except yaml.YAMLError as exc:  # reader errors (control characters ...)
        position = getattr(exc, "position", None)
        line, column = 1, 1
        if isinstance(position, int):
            line = text.count("\n", 0, position) + 1
            column = position - (text.rfind("\n", 0, position) + 1) + 1
        reason = getattr(exc, "reason", None) or "invalid YAML"
        return None, [Diagnostic(Position(name, line, column), (), f"YAML error: {reason}")]


class _Duplicate(str):
    """A repeated key: its value is read (and checked for YAML errors) but not kept."""


def _build(text: str, name: str, duplicates: list[Diagnostic]) -> object:
    """Turn the event stream into values; raises `_Problem` for what YAML allows but we refuse.

    Written as one flat loop with the common cases first (a plain or quoted string that is
    a mapping key or value) and libyaml's marks stored as they are, because it runs once per
    scalar of configs with 100,000 users. Alias expansion is counted only where aliases are.
    """
    anchors: dict[str, object] = {}
    sizes: dict[int, int] = {}
    # stack frames: [container, is_map, pending key, key mark, anchor, key was a plain '<<']
    stack: list[list[Any]] = []
    frame: list[Any] | None = None
    root: object = None
    documents = 0
    expanded = 0
    scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
    map_start, seq_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
    map_end, seq_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
    first_chars = _FIRST_CHARS

    for event in yaml.parse(text, Loader=_Loader):
        kind = type(event)
        if kind is scalar_event:
            mark = event.start_mark
            value: Any = event.value
            tag = event.tag
            if frame is not None and frame[1] and frame[2] is None:  # a mapping key: its text as written
                if tag is not None and tag not in (_STR, "!"):
                    raise _Problem(_pos(name, mark), f"unsupported YAML tag {tag!r} on a key")
                frame[5] = value == "<<" and event.implicit[0]
            elif tag is not None or (event.implicit[0] and (not value or value[0] in first_chars)):
                value = _scalar(event, name)
            if event.anchor:
                anchors[event.anchor] = value
        elif kind is map_start or kind is seq_start:
            mark = event.start_mark
            if event.tag is not None and event.tag not in _PLAIN_TAGS:
                raise _Problem(
                    _pos(name, mark), f"unsupported YAML tag {event.tag!r}: only plain YAML values are allowed"
                )
            is_map = kind is map_start
            frame = [YMap(mark, name) if is_map else YList(mark, name), is_map, None, None, event.anchor, False]
            stack.append(frame)
            continue
        elif kind is map_end or kind is seq_end:
            value, _is_map, _key, _kmark, anchor, _merge = stack.pop()
            frame = stack[-1] if stack else None
            if anchor:
                anchors[anchor] = value
            mark = value.mark
        elif kind is alias_event:
            mark = event.start_mark
            if event.anchor not in anchors:
                raise _Problem(_pos(name, mark), f"alias *{event.anchor} refers to no anchor defined before it")
            value = anchors[event.anchor]
            if frame is not None and frame[1] and frame[2] is None and not isinstance(value, str):
                raise _Problem(_pos(name, mark), "a mapping key must be a plain name")
            expanded += _size(value, sizes)
            if expanded > MAX_NODES:
                raise _Problem(_pos(name, mark), "the document is too large once its aliases are expanded")
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _Problem(_pos(name, event.start_mark), "only one YAML document per file (found a second '---')")
            continue
        else:
            continue

        if frame is None:
            root = value
        elif not frame[1]:
            frame[0].append(value)
            frame[0].itemmarks.append(mark)
        elif frame[2] is not None:
            key = frame[2]
            frame[2] = None
            if type(key) is str:
                container = frame[0]
                container[key] = value
                container.keymarks[key] = frame[3]
                container.valmarks[key] = mark
        else:
            container = frame[0]
            if not isinstance(value, str):
                if isinstance(value, (YMap, YList)):
                    raise _Problem(_pos(name, mark), "a mapping key must be a plain name, not a list or mapping")
                raise _Problem(_pos(name, mark), "a mapping key must be a plain name")
            if frame[5]:
                raise _Problem(_pos(name, mark), "merge keys (<<) are not supported; write the values out")
            if value in container:
                first = container.keymarks[value]
                duplicates.append(
                    Diagnostic(
                        _pos(name, mark),
                        (),
                        f"duplicate key {value!r} (first defined at "
                        f"line {first.line + 1}); YAML would keep "
                        "only the last one",
                    )
                )
                value = _Duplicate(value)
            frame[2], frame[3] = value, mark
    return root


def _size(value: object, memo: dict[int, int]) -> int:
    """How many values ``value`` stands for once every alias inside it is expanded."""
    if not isinstance(value, (YMap, YList)):
        return 1
    known = memo.get(id(value))
    if known is not None:
        return known
    items = value.values() if isinstance(value, YMap) else value
    total = 1 + sum(_size(item, memo) for item in items)
    memo[id(value)] = total
    return total


def _pos(name: str, mark: Any) -> Position:
    return Position(name, mark.line + 1, mark.column + 1)
