"""Check a configuration again by checking only the domains whose YAML changed (plan's config cache).

Loading a 1,000-domain configuration (10 MB of YAML) takes seconds, and between two plans
usually one domain changed, or none. So each file is cut into its domains (`chunks`); every
domain that was checked before without a problem is kept in the cache as what checking it
gave: its `DomainSpec`, its warnings and its `DomainFacts`, with line numbers relative to its
first line. The next check parses and checks only the domains whose bytes are not in the
cache, in a copy of the file where the others are comment lines (`chunks.reduced`: every line
keeps its number), and takes the others from the cache. The result is what `load._check` of
the whole configuration gives, because:

* a kept domain's entry is keyed by the sha256 of its bytes and of a *context* that holds
  everything else its check depends on: every byte of every file outside the domains, the
  files' names and paths, the current directory (``{file:}`` secrets are made absolute from
  the file's name), the schema, the system's libxcrypt (``/etc/ld.so.cache``: which hashes
  are usable) and, through the cache file itself, this very code;
* every parse (the whole one that fills the cache and the reduced one that uses it) must find
  the domains exactly on the lines the cut found, the column-0 key after them on its line, and
  no anchor or alias among them: then each domain's entry is made of its own lines only, and
  what ends it ends it the same way in either file (`chunks` has the argument);
* a domain is kept only when the check of the configuration it was in found no error at all;
  the reduced check must find none either, and what is checked across domains (a base user
  or a name taken twice, forwarding loops, the sizes' spellings) is checked again over all
  domains (`semantics.cross_domain_problem`).

Anything else — an error, a file of another shape, a parse that does not confirm the cut, more
than half of the domains changed — checks the whole configuration exactly as without a cache
(and fills the cache when that check is clean), so every error is reported as it always is.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any

from ..cache.makers import slot_maker
from ..cache.store import CacheStore, stat_key
from ..model import USER_FIELD_TABLE
from .chunks import Split, reduced, split_config
from .errors import Diagnostic
from .hashcheck import NOT_CHECKED
from .load import CheckResult, _display, _result, check_documents, parse_documents, read_config_files
from .schema import schema_path
from .semantics import DocumentFacts, DomainFacts, cross_domain_problem
from .spec import UNSET, YAML_USER_FIELDS, DomainSpec, PasswordSpec, Position, Spec, UserSpec
from .yamlread import YMap

FORMAT = 1
#: With more than this share of the domains changed, the whole configuration is checked (and
#: the cache filled): the reduced check would cost as much.
REDUCED_SHARE = 0.5
#: Configurations (by path) whose checks are kept; the least recently used goes first.
KEPT_CONFIGS = 8
_CACHE_PREFIX = "config-"

#: (file index, chunk index) of a domain, in the order the merged configuration has them.
Place = tuple[int, int]


@dataclass(frozen=True, slots=True)
class DomainPart:
    """One domain as checking it gave: its spec, its warnings, its facts."""

    spec: DomainSpec
    warnings: tuple[Diagnostic, ...]
    facts: DomainFacts


@dataclass(frozen=True, slots=True)
class HeadPart:
    """Everything outside the domains: the spec without domains, its warnings and spellings."""

    spec: Spec
    warnings: tuple[Diagnostic, ...]
    spellings: tuple[tuple[int, str], ...]


def check_config_cached(root: Path, store: CacheStore) -> CheckResult:
    """`load.check_config` of ``root``, using and filling the configuration cache in ``store``."""
    files, raws, diagnostics = read_config_files(root)
    readable = [raw for raw in raws if raw is not None]
    splits = [split_config(raw) for raw in readable]
    if not files or diagnostics or len(readable) != len(files) or any(s is None for s in splits):
        return _whole(files, raws, diagnostics)
    if not any(s.chunks for s in splits if s is not None):
        return _whole(files, raws, diagnostics)  # no domains to keep
    names = tuple(_display(f) for f in files)
    run = _Run(root, files, readable, names, [s for s in splits if s is not None], store)
    return run.check()


def _whole(files: list[Path], raws: list[bytes | None], diagnostics: list[Diagnostic]) -> CheckResult:
    """The check without a cache (`load._check`), on bytes already read."""
    if not files:
        return CheckResult(None, diagnostics)
    documents = parse_documents(files, raws, diagnostics)
    return check_documents(documents, tuple(_display(f) for f in files), diagnostics)[0]


class _Run:
    """One cached check: the files, their cuts, the cache entry, and the three ways to answer."""

    def __init__(
        self,
        root: Path,
        files: list[Path],
        raws: list[bytes],
        names: tuple[str, ...],
        splits: list[Split],
        store: CacheStore,
    ) -> None:
        self.root, self.files, self.raws, self.names, self.splits, self.store = root, files, raws, names, splits, store
        self.places: list[Place] = [(f, c) for f, split in enumerate(splits) for c in range(len(split.chunks))]
        self.context = _context(files, names, splits)
        self.ids = {
            place: _chunk_id(self.context, place, splits[place[0]].chunks[place[1]].text) for place in self.places
        }
        self.entry_name = _CACHE_PREFIX + hashlib.sha256(f"{os.path.abspath(root)}\0{root}".encode()).hexdigest()[:16]

    def check(self) -> CheckResult:
        saved = _saved(self.store.load(self.entry_name), self.context) if self.places else None
        head_record, records = saved if saved is not None else (None, {})
        parts: dict[Place, DomainPart] = {}
        for place in self.places:
            record = records.get(self.ids[place])
            part = self._decode(place, record) if record is not None else None
            if part is not None:
                parts[place] = part
        missing = [place for place in self.places if place not in parts]
        head = self._decode_head(head_record) if head_record is not None else None
        if not missing and head is not None:
            result = self._assemble(head, parts)
            if result is not None:
                return result
        elif self.places and len(missing) <= REDUCED_SHARE * len(self.places):
            result = self._reduced(set(missing), parts, records)
            if result is not None:
                return result
        return self._full()

    # -- the whole configuration, filling the cache ----------------------------------------

    def _full(self) -> CheckResult:
        result, facts, roots, anchors = self._check(set(self.places))
        if result.errors or result.spec is None or not self._confirmed(roots, anchors, set(self.places)):
            return result
        parts, head = self._parts(result, facts, set(self.places))
        if head is not None:
            self._save(head, {self.ids[p]: r for p, r in parts.items()})
        result.spec = replace(result.spec, digests=self._digests())
        return result

    # -- only the changed domains ----------------------------------------------------------

    def _reduced(
        self, missing: set[Place], parts: dict[Place, DomainPart], records: Mapping[bytes, object]
    ) -> CheckResult | None:
        result, facts, roots, anchors = self._check(missing)
        if result.errors or result.spec is None or not self._confirmed(roots, anchors, missing):
            return None
        checked = {d.name: d for d in result.spec.domains}
        if [d.name for d in result.spec.domains] != [self._chunk(p).key for p in self.places if p in missing]:
            return None
        new_records, head = self._parts(result, facts, missing)
        if head is None:
            return None  # which hash the warning names depends on every domain: check them all
        everything = dict(parts)
        for place in missing:
            name = self._chunk(place).key
            everything[place] = DomainPart(checked[name], _domain_warnings(result.warnings, name), facts.domains[name])
        head_part = HeadPart(result.spec, _head_warnings(result.warnings, self._keys()), facts.spellings)
        assembled = self._assemble(head_part, everything)
        if assembled is None:
            return None
        kept = {self.ids[p]: records[self.ids[p]] for p in parts}
        self._save(head, {**kept, **{self.ids[p]: r for p, r in new_records.items()}})
        return assembled

    def _check(self, present: set[Place]) -> tuple[CheckResult, DocumentFacts, list[object], list[list[int]]]:
        raws: list[bytes | None] = []
        for index, split in enumerate(self.splits):
            keep = {c for f, c in present if f == index}
            raws.append(self.raws[index] if len(keep) == len(split.chunks) else reduced(split, keep))
        diagnostics: list[Diagnostic] = []
        anchors: list[list[int]] = []
        documents = parse_documents(self.files, raws, diagnostics, anchors)
        result, facts = check_documents(documents, self.names, diagnostics)
        return result, facts, [value for _, value in documents], anchors

    def _confirmed(self, roots: list[object], anchors: list[list[int]], present: set[Place]) -> bool:
        """The parse found the domains of each file exactly where the cut put them (and those of
        ``present`` only), the top-level key after them on its line, and no anchor or alias
        among them."""
        if len(roots) != len(self.splits):
            return False
        for index, (root, split) in enumerate(zip(roots, self.splits, strict=True)):
            if split.domains_span is None:
                if isinstance(root, YMap) and "domains" in root:
                    return False
                continue
            if not isinstance(root, YMap) or not isinstance(root.get("domains"), YMap):
                return False
            mark = root.keymarks.get("domains")
            if mark is None or (mark.line, mark.column) != (split.domains_line, 0):
                return False
            top = sorted(m.line for m in root.keymarks.values() if m is not None and m.line > split.domains_line)
            if split.after and (not top or top[0] != split.after_line):
                return False
            if not split.after and top:
                return False
            domains: YMap = root["domains"]
            wanted = [split.chunks[c] for f, c in self.places if f == index and (f, c) in present]
            if list(domains) != [chunk.key for chunk in wanted]:
                return False
            for chunk in wanted:
                mark = domains.keymarks.get(chunk.key)
                if mark is None or (mark.line, mark.column) != (chunk.line, split.indent):
                    return False
            first = split.chunks[0].line
            end = split.after_line if split.after else float("inf")
            if any(first <= line < end for line in anchors[index]):
                return False
        return True

    # -- what a check gives, per domain and for the rest -----------------------------------

    def _parts(
        self, result: CheckResult, facts: DocumentFacts, present: set[Place]
    ) -> tuple[dict[Place, tuple[Any, ...]], tuple[Any, ...] | None]:
        """Records of the domains of ``present`` and of the rest (None when the rest cannot be
        kept: a warning about no hash being checked depends on every domain)."""
        assert result.spec is not None
        if any(w.message.startswith(NOT_CHECKED) for w in result.warnings):
            return {}, None
        by_name = {d.name: d for d in result.spec.domains}
        records: dict[Place, tuple[Any, ...]] = {}
        for place in present:
            chunk = self._chunk(place)
            spec = by_name.get(chunk.key)
            domain_facts = facts.domains.get(chunk.key)
            if spec is None or domain_facts is None:
                continue
            record = _encode_domain(
                spec, _domain_warnings(result.warnings, chunk.key), domain_facts, self.names[place[0]], chunk
            )
            if record is not None:
                records[place] = record
        head = _encode_head(result.spec, _head_warnings(result.warnings, self._keys()), facts.spellings, self)
        return records, head

    def _assemble(self, head: HeadPart, parts: Mapping[Place, DomainPart]) -> CheckResult | None:
        ordered = [parts[place] for place in self.places]
        domains = [part.spec for part in ordered]
        if cross_domain_problem(domains, {part.spec.name: part.facts for part in ordered}):
            return None
        spellings: dict[int, str] = {}
        for number, spelling in head.spellings:
            spellings.setdefault(number, spelling)
        for part in ordered:
            for number, spelling in part.facts.spellings:
                spellings.setdefault(number, spelling)
        spec = replace(head.spec, domains=tuple(domains), size_spellings=spellings, digests=self._digests())
        warnings = [*head.warnings, *(w for part in ordered for w in part.warnings)]
        return _result(spec, warnings, self.names)

    def _decode(self, place: Place, record: object) -> DomainPart | None:
        chunk = self._chunk(place)
        try:
            return _decode_domain(record, self.names[place[0]], chunk.line + 1, chunk.key)
        except (TypeError, ValueError, KeyError):
            return None

    def _decode_head(self, record: object) -> HeadPart | None:
        try:
            return _decode_head(record, self)
        except (TypeError, ValueError, KeyError, IndexError):
            return None

    def _save(self, head: tuple[Any, ...], records: dict[bytes, Any]) -> None:
        self.store.save(self.entry_name, (FORMAT, self.context, head, records))
        entries = [n for n in self.store.names() if n.startswith(_CACHE_PREFIX)]
        if len(entries) > KEPT_CONFIGS:
            for name in sorted(entries, key=self.store.mtime_ns)[: len(entries) - KEPT_CONFIGS]:
                if name != self.entry_name:
                    self.store.remove(name)

    def _digests(self) -> dict[str, bytes]:
        """Each domain's chunk id: its bytes and their context (a domain written twice has none)."""
        keys = [self._chunk(place).key for place in self.places]
        twice = {key for key, count in Counter(keys).items() if count > 1}
        return {key: self.ids[place] for key, place in zip(keys, self.places, strict=True) if key not in twice}

    def _chunk(self, place: Place) -> Any:
        return self.splits[place[0]].chunks[place[1]]

    def _keys(self) -> set[str]:
        return {self._chunk(place).key for place in self.places}


# -- keys ------------------------------------------------------------------------------------


def _context(files: list[Path], names: tuple[str, ...], splits: list[Split]) -> bytes:
    """The digest of everything a domain's check depends on besides its own lines."""
    digest = hashlib.sha256(f"{FORMAT}\0{os.getcwd()}\0".encode())
    digest.update(_schema_digest())
    digest.update(repr(_libcrypt_key()).encode())
    for file, name, split in zip(files, names, splits, strict=True):
        for part in (
            os.path.abspath(file).encode(),
            name.encode(),
            split.before,
            split.after,
            str(split.indent).encode(),
        ):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.digest()


def _chunk_id(context: bytes, place: Place, text: bytes) -> bytes:
    return hashlib.sha256(context + f"\0{place[0]}\0".encode() + text).digest()


@lru_cache(maxsize=1)
def _schema_digest() -> bytes:
    return hashlib.sha256(schema_path().read_bytes()).digest()


def _libcrypt_key() -> object:
    """The identity of the dynamic loader's cache: ``ldconfig`` rewrites it whenever a library
    (libxcrypt among them) is installed, upgraded or removed; which hashes are usable may
    change then."""
    try:
        return stat_key(os.stat("/etc/ld.so.cache"))
    except OSError:
        return None


def _saved(body: object, context: bytes) -> tuple[object, dict[bytes, object]] | None:
    """(head record, {chunk id: record}) of a cache entry made in this ``context``."""
    if type(body) is not tuple or len(body) != 4 or body[0] != FORMAT or body[1] != context:
        return None
    if type(body[3]) is not dict:
        return None
    return body[2], body[3]


# -- records: plain tuples, lines relative to the domain's first line --------------------------

_FIELD_UNITS = {f.name: f.unit for f in USER_FIELD_TABLE if f.yaml_rank}
_NUMBER_UNITS = frozenset(("size", "count", "expiry"))
_make_user: Callable[[tuple[Any, ...]], UserSpec] = slot_maker(
    UserSpec, ("name", "kind", "aliases", "position", "given")
)
_make_position: Callable[[tuple[Any, ...]], Position] = slot_maker(Position, ("file", "line", "column"))
_make_password: Callable[[tuple[Any, ...]], PasswordSpec] = slot_maker(PasswordSpec, ("kind", "value"))
_PASSWORD_KINDS = frozenset(("hash", "env", "file", "unmanaged", "none"))
_YAML_FIELDS = frozenset(YAML_USER_FIELDS)


def _relative(position: Position | None, file: str, first: int, last: int) -> tuple[int, int] | None:
    """``(line - first, column)``; ValueError when the position is not in lines first..last of ``file``."""
    if position is None:
        return None
    if position.file != file or not first <= position.line <= last:
        raise ValueError("a position outside the domain")
    return (position.line - first, position.column)


def _encode_domain(
    spec: DomainSpec, warnings: Sequence[Diagnostic], facts: DomainFacts, file: str, chunk: Any
) -> tuple[Any, ...] | None:
    first, last = chunk.line + 1, chunk.line + 1 + chunk.newlines
    if any(w.position is None for w in warnings):
        return None
    try:
        users = _encode_users(spec.users, file, first, last)
        encoded = (
            spec.name,
            spec.base_user,
            spec.wildcard,
            spec.domain_aliases,
            tuple(spec.options.items()),
            spec.prune,
            False if spec.catch_all is UNSET else spec.catch_all,
            spec.rcpthosts_file,
            _relative(spec.position, file, first, last),
            spec.system_account,
            users,
        )
        notes = tuple((*(_relative(w.position, file, first, last) or ()), w.path, w.message) for w in warnings)
    except ValueError:
        return None
    return (encoded, notes, (facts.keys, facts.forwards, facts.spellings))


def _decode_domain(record: Any, file: str, first: int, key: str) -> DomainPart | None:
    """The `DomainPart` of a record, positions in ``file`` from line ``first``; None or an
    exception (TypeError, ValueError, KeyError) when it is not exactly what `_encode_domain` makes."""
    encoded, notes, (keys, forwards, spellings) = record
    (name, base_user, wildcard, aliases, options, prune, catch_all, rcpthosts, position, system, users) = encoded
    if name != key or type(base_user) is not str or type(wildcard) is not bool or type(prune) is not bool:
        return None
    if type(system) is not bool or rcpthosts not in ("rcpthosts", "morercpthosts") or not _strings(aliases):
        return None
    if not (catch_all is None or catch_all is False or type(catch_all) is str):
        return None
    if type(options) is not tuple or not all(
        type(o) is tuple and len(o) == 2 and type(o[0]) is str and (type(o[1]) is str or _strings(o[1]))
        for o in options
    ):
        return None
    if not (_strings(keys) and type(forwards) is tuple and all(_string_pair(f) for f in forwards)):
        return None
    if type(spellings) is not tuple or not all(
        type(s) is tuple and len(s) == 2 and type(s[0]) is int and type(s[1]) is str for s in spellings
    ):
        return None
    spec = DomainSpec(
        name=name,
        base_user=base_user,
        wildcard=wildcard,
        domain_aliases=aliases,
        options=dict(options),
        prune=prune,
        catch_all=UNSET if catch_all is False else catch_all,
        users=_decode_users(users, file, first),
        rcpthosts_file=rcpthosts,
        position=_absolute(position, file, first),
        system_account=system,
    )
    warnings = tuple(
        Diagnostic(_make_position((file, line + first, column)), _path(path), message, "warning")
        for line, column, path, message in notes
        if type(line) is int and type(column) is int and type(message) is str
    )
    if len(warnings) != len(notes):
        return None
    return DomainPart(spec, warnings, DomainFacts(keys, forwards, spellings))


def _encode_users(users: Sequence[UserSpec], file: str, first: int, last: int) -> tuple[Any, ...]:
    """The entries as columns (names, kinds, aliases, lines, columns, field-name tuples, which
    tuple each entry has, its values): `_decode_users` checks each column in one go."""
    shapes: dict[tuple[str, ...], int] = {}
    lines, columns, shape_of, values = [], [], [], []
    for user in users:
        where = _relative(user.position, file, first, last)
        lines.append(where[0] if where else None)
        columns.append(where[1] if where else None)
        shape_of.append(shapes.setdefault(tuple(user.given), len(shapes)))
        values.append(tuple((v.kind, v.value) if isinstance(v, PasswordSpec) else v for v in user.given.values()))
    return (
        tuple(u.name for u in users),
        tuple(u.kind for u in users),
        tuple(u.aliases for u in users),
        tuple(lines),
        tuple(columns),
        tuple(shapes),
        tuple(shape_of),
        tuple(values),
    )


def _decode_users(encoded: Any, file: str, first: int) -> tuple[UserSpec, ...]:
    """The entries of `_encode_users`' columns; TypeError or ValueError when any column is not
    exactly of the types it must have."""
    names, kinds, aliases, lines, columns, shapes, shape_of, values = encoded
    count = len(names)
    columns_ = (names, kinds, aliases, lines, columns, shape_of, values)
    if any(type(c) is not tuple or len(c) != count for c in columns_) or type(shapes) is not tuple:
        raise TypeError("user columns")
    if count == 0:
        return ()
    if (
        not set(map(type, names)) <= {str}
        or not set(kinds) <= {"user", "alias"}
        or not set(map(type, aliases)) <= {tuple}
        or not set(map(type, chain.from_iterable(aliases))) <= {str}
        or not set(map(type, lines)) <= {int, type(None)}
        or [line is None for line in lines] != [column is None for column in columns]
        or not set(map(type, columns)) <= {int, type(None)}
        or not set(map(type, shape_of)) <= {int}
        or not set(shape_of) <= set(range(len(shapes)))
        or not set(map(type, values)) <= {tuple}
    ):
        raise TypeError("user columns")
    givens: list[dict[str, object]] = [{}] * count
    members: dict[int, list[int]] = {}
    for index, shape in enumerate(shape_of):
        members.setdefault(shape, []).append(index)
    passwords: dict[object, PasswordSpec] = {}
    for number, indexes in members.items():
        shape = shapes[number]
        if type(shape) is not tuple or len(set(shape)) != len(shape) or not set(shape) <= _YAML_FIELDS:
            raise TypeError("fields")
        rows = [values[i] for i in indexes]
        if set(map(len, rows)) != {len(shape)}:
            raise TypeError("values")
        for field, column in zip(shape, zip(*rows, strict=True), strict=True):
            if not _valid_column(_FIELD_UNITS[field], column):
                raise TypeError(field)
        at = shape.index("password") if "password" in shape else -1
        for index, row in zip(indexes, rows, strict=True):
            given = dict(zip(shape, row, strict=True))
            if at >= 0:
                password = passwords.get(row[at])
                if password is None:
                    password = passwords[row[at]] = _make_password(row[at])
                given["password"] = password
            givens[index] = given
    make_position = _make_position
    positions = [
        None if line is None else make_position((file, line + first, column))
        for line, column in zip(lines, columns, strict=True)
    ]
    return tuple(map(_make_user, zip(names, kinds, aliases, positions, givens, strict=True)))


def _valid_column(unit: str, column: tuple[Any, ...]) -> bool:
    types = set(map(type, column))
    if unit in _NUMBER_UNITS:
        return types <= {int, type(None)}
    if unit == "time":
        return types <= {int}
    if unit == "text":
        return types <= {str}
    if unit == "flag":
        return types <= {bool}
    if unit == "addresses":
        return types <= {tuple} and set(map(type, chain.from_iterable(column))) <= {str}
    if unit == "hash":
        return (
            types <= {tuple}
            and set(map(len, column)) <= {2}
            and {kind for kind, _ in column} <= _PASSWORD_KINDS
            and set(map(type, (value for _, value in column))) <= {str, type(None)}
        )
    return False


def _absolute(position: Any, file: str, first: int) -> Position | None:
    if position is None:
        return None
    line, column = position
    if type(line) is not int or type(column) is not int:
        raise TypeError("position")
    return Position(file, line + first, column)


def _path(path: object) -> tuple[str | int, ...]:
    if type(path) is not tuple or not all(type(p) is str or type(p) is int for p in path):
        raise TypeError("path")
    return path


def _strings(value: object) -> bool:
    return type(value) is tuple and all(type(item) is str for item in value)


def _string_pair(value: object) -> bool:
    return type(value) is tuple and len(value) == 2 and type(value[0]) is str and type(value[1]) is str


def _domain_warnings(warnings: Sequence[Diagnostic], name: str) -> tuple[Diagnostic, ...]:
    return tuple(w for w in warnings if w.path[:2] == ("domains", name))


def _head_warnings(warnings: Sequence[Diagnostic], keys: set[str]) -> tuple[Diagnostic, ...]:
    return tuple(w for w in warnings if not (len(w.path) >= 2 and w.path[0] == "domains" and w.path[1] in keys))


def _encode_head(
    spec: Spec, warnings: Sequence[Diagnostic], spellings: tuple[tuple[int, str], ...], run: _Run
) -> tuple[Any, ...] | None:
    """Everything outside the domains. A warning's line is kept as it is in the file's first
    part, relative to the part after the domains there (whose lines move when a domain grows)."""
    notes = []
    for warning in warnings:
        position = warning.position
        if position is None or position.file not in run.names:
            return None
        index = run.names.index(position.file)
        split = run.splits[index]
        zero = position.line - 1
        if not split.chunks or zero < split.chunks[0].line:
            notes.append((index, 0, position.line, position.column, warning.path, warning.message))
        elif zero >= split.after_line:
            notes.append((index, 1, zero - split.after_line, position.column, warning.path, warning.message))
        else:
            return None
    fields = (
        tuple(spec.options.items()),
        spec.qmail_root,
        spec.reload_command,
        spec.bindir,
        spec.password_scheme,
        spec.history_keep,
    )
    return (fields, tuple(notes), spellings)


def _decode_head(record: Any, run: _Run) -> HeadPart | None:
    fields, notes, spellings = record
    options, qmail_root, reload_command, bindir, scheme, keep = fields
    if type(options) is not tuple or not all(
        type(o) is tuple and len(o) == 2 and type(o[0]) is str and (type(o[1]) is str or _strings(o[1]))
        for o in options
    ):
        return None
    if not all(type(v) is str for v in (qmail_root, bindir, scheme)) or type(keep) is not int:
        return None
    if not (reload_command is None or type(reload_command) is str):
        return None
    if type(spellings) is not tuple or not all(
        type(s) is tuple and len(s) == 2 and type(s[0]) is int and type(s[1]) is str for s in spellings
    ):
        return None
    warnings = []
    for index, region, line, column, path, message in notes:
        split = run.splits[index]
        if type(line) is not int or type(column) is not int or type(message) is not str or region not in (0, 1):
            return None
        absolute = line if region == 0 else line + split.after_line + 1
        warnings.append(Diagnostic(Position(run.names[index], absolute, column), _path(path), message, "warning"))
    spec = Spec(
        options=dict(options),
        qmail_root=qmail_root,
        reload_command=reload_command,
        bindir=bindir,
        password_scheme=scheme,
        sources=run.names,
        history_keep=keep,
    )
    return HeadPart(spec, tuple(warnings), spellings)
