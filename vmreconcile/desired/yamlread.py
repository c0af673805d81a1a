"""Safe YAML to plain values that remember where each key and value was written.

PyYAML's composer is slow (about 8 s for a 100,000-user file here) and its constructor keeps
the last of two equal keys without a word. This reader walks libyaml's event stream instead
and builds dicts and lists directly, recording ``(file, line, column)`` for every key and
value. Only the safe YAML types exist: str, int, float, bool, None; timestamps stay the text
they were written as (`units` parses them, in UTC).

What YAML allows but a configuration must not hold is reported here, every problem of a file at
once, and the value is replaced by `REFUSED` (a key and its value are dropped), so the later
stages neither report it again nor use it: duplicate keys, tags other than the plain ones,
merge keys, tagged values that are not what their tag says (``!!bool "maybe"``), YAML 1.1
octal, binary and base-60 numbers (``0755``, ``0b11``, ``1:30``: a YAML 1.2 reader and a person
read them differently), and control characters in any key or value.

The cost of a file is bounded by its size: nesting deeper than `MAX_DEPTH` (aliases counted) is
refused before anything recurses over it, and aliases may stand for at most `ALIAS_BASE` values
plus `ALIAS_FACTOR` times the values written out (billion laughs, and the same shared node
checked millions of times by the schema). The containers print as a short summary, never as
their (possibly alias-expanded) contents: jsonschema puts ``repr(instance)`` into every error.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode

from .errors import Diagnostic, PathPart
from .spec import Position

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

#: Containers nested deeper than this (the root is level 1; values reached through aliases
#: count at their expanded depth) are refused. A configuration needs 7.
MAX_DEPTH = 32
#: Aliases may stand for at most this many values (scalars and containers, counted expanded) ...
ALIAS_BASE = 100_000
#: ... plus this many per value written out in the file.
ALIAS_FACTOR = 2

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_VALUE = "tag:yaml.org,2002:value"
_SCALAR_TAGS = frozenset((_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP, "!"))
_MAP_TAGS = frozenset((_MAP, "!"))
_SEQ_TAGS = frozenset((_SEQ, "!"))
_NULL_WORDS = ("", "~", "null", "Null", "NULL")
#: C0 controls, DEL and C1 controls: never in a name or value ([compat: keys] forbids some of
#: them in names; these are refused everywhere, because every value reaches a file or a terminal).
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")
_resolver = yaml.resolver.Resolver()
_constructor = SafeConstructor()
_FIRST_CHARS = frozenset(k for k in yaml.resolver.Resolver.yaml_implicit_resolvers if k)


class _Refused:
    """The type of `REFUSED`: a value the reader reported and replaced. Not a str, number, list
    or mapping, so the schema and the semantic checks (which skip wrong types) ignore it."""

    _instance: _Refused | None = None

    def __new__(cls) -> _Refused:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REFUSED"


REFUSED = _Refused()


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

    def __repr__(self) -> str:
        """A summary: the contents may be shared through aliases many times over (see module doc)."""
        return f"<mapping of {len(self)} keys at {self.position}>"

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

    def __repr__(self) -> str:
        """A summary: the contents may be shared through aliases many times over (see module doc)."""
        return f"<list of {len(self)} items at {self.position}>"

    @property
    def position(self) -> Position:
        return _pos(self.file, self.mark)

    def item_position(self, index: int) -> Position:
        if 0 <= index < len(self.itemmarks):
            return _pos(self.file, self.itemmarks[index])
        return self.position


class _Problem(Exception):
    """A problem that ends the reading of a file (syntax, size, a second document)."""

    def __init__(self, position: Position, message: str) -> None:
        self.position, self.message = position, message


class _Dropped(str):
    """A key that is not kept (repeated, refused): its value is read, checked and dropped."""


def control_character_problem(text: str) -> str | None:
    """Why ``text`` cannot be a name or value (it holds a control character), or None."""
    if text.isprintable():
        return None
    found = CONTROL_CHARACTERS.search(text)
    if found is None:
        return None
    hint = " (a block scalar, | or >, keeps its line breaks: write the value on one line)" if found[0] == "\n" else ""
    return (
        f"contains the control character {found[0]!r}: names and values cannot hold control "
        f"characters (U+0000-U+001F, U+007F-U+009F){hint}"
    )


def _number_problem(value: str, tag: str) -> str | None:
    """Why a plain or ``!!int``/``!!float`` scalar is refused as YAML 1.1-only number syntax, or None.

    YAML 1.1 reads ``0755`` as octal (493), ``0b11`` as binary and ``1:30`` as base 60 (90);
    YAML 1.2, editors and people read them differently, so none of them is taken as a number.
    """
    digits = value.replace("_", "").lstrip("+-")
    if ":" in digits:
        kind = "base-60"
    elif tag == _INT and digits[:2] in ("0b", "0B"):
        kind = "binary"
    elif tag == _INT and len(digits) > 1 and digits[0] == "0" and digits[1] not in "xX":
        kind = "octal"
    else:
        return None
    try:
        number = _constructor.construct_yaml_int(ScalarNode(tag, value)) if tag == _INT else None
    except ValueError:
        return None  # not a number in any YAML: `_construct` says so
    shown = f" ({number})" if number is not None else ""
    write = f"write {number} for that number" if number is not None else "write the number in decimal"
    return f"{value} is a YAML 1.1 {kind} number{shown}: {write}, or '{value}' for the text"


def _construct(tag: str, value: str) -> tuple[object, str | None]:
    """The value of a scalar with a resolved or explicit plain tag, or ``(REFUSED, why)``."""
    if tag == _TIMESTAMP:  # kept as text (`units` reads it in UTC), but it must be one
        if SafeConstructor.timestamp_regexp.match(value):
            return value, None
        return REFUSED, f"{value!r} is not a valid timestamp"
    if tag in (_STR, "!"):
        return value, None
    if tag == _NULL:
        return (None, None) if value in _NULL_WORDS else (REFUSED, f"{value!r} is not a valid null")
    if tag == "tag:yaml.org,2002:merge":
        return REFUSED, "merge keys (<<) are not supported; write the values out"
    if tag in (_INT, _FLOAT):
        problem = _number_problem(value, tag)
        if problem:
            return REFUSED, problem
    node = ScalarNode(tag, value)
    try:
        if tag == _INT:
            return _constructor.construct_yaml_int(node), None
        if tag == _FLOAT:
            return _constructor.construct_yaml_float(node), None
        if tag == _BOOL:
            return _constructor.construct_yaml_bool(node), None
    except (ValueError, KeyError, IndexError, TypeError, OverflowError, yaml.YAMLError):
        pass
    return REFUSED, f"{value!r} is not a valid {tag.rsplit(':', 1)[-1]}"


def _scalar(event: Any) -> tuple[object, str | None]:
    """The value of a scalar event (YAML 1.1 safe rules, timestamps kept as text) and why it is
    refused (None when it is not)."""
    value = event.value
    tag = event.tag
    if tag is not None:
        if tag in _SCALAR_TAGS:
            return _construct(tag, value)
        if tag in (_MAP, _SEQ):
            return REFUSED, f"the tag {tag!r} does not fit a single value"
        return REFUSED, f"unsupported YAML tag {tag!r}: only plain YAML values are allowed"
    if not event.implicit[0]:  # quoted
        return value, None
    if not value:
        return None, None
    if value[0] not in _FIRST_CHARS:
        return value, None
    resolved = _resolver.resolve(ScalarNode, value, (True, False))
    if resolved == _VALUE:  # a plain '=': YAML 1.1's "default value" key, text everywhere else
        return value, None
    return _construct(resolved, value)


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _Problem(Position(name, line, column), "the file is not valid UTF-8") from None


def read_yaml(raw: bytes, name: str, anchor_lines: list[int] | None = None) -> tuple[object, list[Diagnostic]]:
    """Parse one YAML file's bytes into ``(value, problems)``.

    ``value`` is a `YMap`, or None for an empty file or one that cannot be used at all (a
    syntax error, a top level that is not a mapping, too deep, too many alias expansions).
    Other problems are reported and their values replaced by `REFUSED` (keys dropped), so the
    rest of the file is still checked. ``anchor_lines`` gets the line (0-based) of every
    anchor and alias (`incremental` caches no part of a file that has one among its domains).
    """
    text = ""
    try:
        text = _decode(raw, name)
        problems: list[Diagnostic] = []
        root, root_mark = _build(text, name, problems, anchor_lines)
        if root is not None and not isinstance(root, YMap):
            what = "a list" if isinstance(root, YList) else "a single value"
            problems.append(
                Diagnostic(
                    _pos(name, root_mark),
                    (),
                    f"the top level must be a mapping with keys such as 'domains', not {what}",
                )
            )
            return None, problems
        return root, problems
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


def _path(stack: list[list[Any]], key: str | None = None) -> tuple[PathPart, ...]:
    """The YAML path of the value being read (or of ``key`` in the innermost mapping)."""
    out: list[PathPart] = []
    for frame in stack:
        if not frame[1]:
            out.append(len(frame[0]))
        elif frame[2] is not None:
            out.append(str(frame[2]))
    if key is not None:
        out.append(key)
    return tuple(out)


def _build(
    text: str, name: str, problems: list[Diagnostic], anchor_lines: list[int] | None = None
) -> tuple[object, Any]:
    """Turn the event stream into values and the root's mark; problems that make the file
    unusable raise `_Problem`, the others are appended to ``problems``.

    Written as one flat loop with the common cases first (a plain or quoted string that is
    a mapping key or value) and libyaml's marks stored as they are, because it runs once per
    scalar of configs with 100,000 users. Alias expansion is counted only where aliases are.
    """
    anchors: dict[str, object] = {}
    measured: dict[int, tuple[int, int]] = {}
    # stack frames: [container, is_map, pending key, key mark, anchor, key was a plain '<<', refused]
    stack: list[list[Any]] = []
    frame: list[Any] | None = None
    root: object = None
    root_mark: Any = None
    documents = 0
    written = 0
    expanded = 0
    scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
    map_start, seq_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
    map_end, seq_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
    first_chars = _FIRST_CHARS

    def problem(mark: Any, message: str, key: str | None = None) -> None:
        problems.append(Diagnostic(_pos(name, mark), _path(stack, key), message))

    for event in yaml.parse(text, Loader=_Loader):
        kind = type(event)
        if kind is scalar_event:
            written += 1
            mark = event.start_mark
            value: Any = event.value
            tag = event.tag
            if frame is not None and frame[1] and frame[2] is None:  # a mapping key: its text as written
                frame[5] = value == "<<" and event.implicit[0]
                if tag is not None and tag not in (_STR, "!"):
                    problem(mark, f"unsupported YAML tag {tag!r} on a key: a key is a plain name")
                    value = _Dropped(value)
            else:
                why = None
                if tag is not None or (event.implicit[0] and (not value or value[0] in first_chars)):
                    value, why = _scalar(event)
                if why is not None:
                    problem(mark, why)
            if type(value) is str and not value.isprintable():
                why = control_character_problem(value)
                if why is not None:
                    in_key = frame is not None and frame[1] and frame[2] is None
                    problem(mark, why, value if in_key else None)
                    value = _Dropped(value) if in_key else REFUSED
            if event.anchor:
                anchors[event.anchor] = value
                if anchor_lines is not None:
                    anchor_lines.append(mark.line)
        elif kind is map_start or kind is seq_start:
            written += 1
            mark = event.start_mark
            if len(stack) >= MAX_DEPTH:
                raise _Problem(_pos(name, mark), f"the YAML is nested deeper than {MAX_DEPTH} levels")
            is_map = kind is map_start
            refused = False
            if event.tag is not None and event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
                tag = event.tag
                if tag in _SCALAR_TAGS or tag in (_MAP, _SEQ):
                    why = f"the tag {tag!r} does not fit a {'mapping' if is_map else 'list'}"
                else:
                    why = f"unsupported YAML tag {tag!r}: only plain YAML values are allowed"
                problem(mark, why)
                refused = True
            if event.anchor and anchor_lines is not None:
                anchor_lines.append(mark.line)
            frame = [
                YMap(mark, name) if is_map else YList(mark, name),
                is_map,
                None,
                None,
                event.anchor,
                False,
                refused,
            ]
            stack.append(frame)
            continue
        elif kind is map_end or kind is seq_end:
            value, _is_map, _key, _kmark, anchor, _merge, refused = stack.pop()
            frame = stack[-1] if stack else None
            mark = value.mark
            if refused:
                value = REFUSED
            if anchor:
                anchors[anchor] = value
        elif kind is alias_event:
            mark = event.start_mark
            if anchor_lines is not None:
                anchor_lines.append(mark.line)
            if event.anchor not in anchors:
                problem(mark, f"alias *{event.anchor} refers to no anchor defined before it")
                value = REFUSED
            else:
                value = anchors[event.anchor]
                size, height = _measure(value, measured)
                if len(stack) + height > MAX_DEPTH:
                    raise _Problem(
                        _pos(name, mark),
                        f"the YAML is nested deeper than {MAX_DEPTH} levels once alias *{event.anchor} is expanded",
                    )
                expanded += size
                if expanded > ALIAS_BASE + ALIAS_FACTOR * written:
                    raise _Problem(
                        _pos(name, mark),
                        f"aliases stand for too many values ({expanded:,} by *{event.anchor}, more than "
                        f"{ALIAS_BASE:,} plus {ALIAS_FACTOR} per value written out): write the values out",
                    )
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _Problem(_pos(name, event.start_mark), "only one YAML document per file (found a second '---')")
            continue
        else:
            continue

        if frame is None:
            root, root_mark = value, mark
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
            if type(value) is not str and type(value) is not _Dropped:
                if value is not REFUSED:
                    what = "a list or mapping" if isinstance(value, (YMap, YList)) else "a value of another type"
                    problem(mark, f"a mapping key must be a plain name, not {what}")
                value = _Dropped("")
            elif frame[5]:
                problem(mark, "merge keys (<<) are not supported; write the values out", value)
                value = _Dropped(value)
            elif type(value) is str and value in container:
                first = container.keymarks[value]
                problem(
                    mark,
                    f"duplicate key {value!r} (first defined at line {first.line + 1}); YAML would keep only the last one",
                    value,
                )
                value = _Dropped(value)
            frame[2], frame[3] = value, mark
    return root, root_mark


def _measure(value: object, memo: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """``(values, depth)`` of ``value`` once every alias inside it is expanded.

    Recursion is bounded: a container is never built deeper than `MAX_DEPTH`.
    """
    if not isinstance(value, (YMap, YList)):
        return 1, 0
    known = memo.get(id(value))
    if known is not None:
        return known
    items = value.values() if isinstance(value, YMap) else value
    total, deepest = 1, 0
    for item in items:
        size, height = _measure(item, memo)
        total += size
        deepest = max(deepest, height)
    memo[id(value)] = (total, deepest + 1)
    return total, deepest + 1


def _pos(name: str, mark: Any) -> Position:
    return Position(name, mark.line + 1, mark.column + 1)
