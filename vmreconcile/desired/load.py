"""Load a configuration: one YAML file or a directory of them, into a `Spec`.

Steps, each collecting every problem it finds rather than stopping at the first: read each
file safely with positions (`yamlread`), merge the files section by section, check the
structure against the JSON Schema (`schema`), then check values and build the `Spec`
(`semantics`). `load_spec` raises `ConfigErrors` listing every error; `check_config` returns
everything (errors and warnings) for ``vmreconcile validate``. Reads only the YAML files:
``{env:}``/``{file:}`` secrets are left for the planner.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..gcpause import collector_paused as _collector_paused
from ..tables import UnsafeFile, read_bounded
from .errors import ConfigErrors, Diagnostic, sorted_diagnostics
from .schema import schema_errors
from .semantics import DocumentFacts, build_spec_with_facts
from .spec import Position, Spec
from .yamlread import YMap, read_yaml

__all__ = ["ConfigErrors", "CheckResult", "check_config", "config_files", "load_spec", "merge_documents"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..cache.store import CacheStore

#: Top-level sections whose entries are merged across files (anything else is one value).
MERGED_SECTIONS = ("qmail", "runtime", "vmailmgr", "passwords", "domains")
SUFFIXES = (".yaml", ".yml")
#: The most a configuration's files may hold in all: 4x the 100,000-user example (16 MB), and
#: what keeps validate's memory bounded (about 40 bytes of objects per byte of YAML).
MAX_CONFIG_BYTES = 64 * 1024 * 1024


@dataclass
class CheckResult:
    """What ``validate`` needs: the Spec (None on errors) and sorted diagnostics."""

    spec: Spec | None
    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    files: tuple[str, ...] = ()


#: Why a file of a configuration directory must be a regular file of its own: the directory
#: is a git checkout anyone with a pull request writes to, and validate, plan and apply run
#: as root; a committed ``domains/x.yaml -> /etc/shadow`` would be read and its lines shown in
#: diagnostics. The path given on the command line may be a link (admins make those).
SYMLINK_IN_TREE = (
    "is a symbolic link; a configuration directory's files must be regular files (a link is never followed)"
)


def config_files(path: Path) -> list[Path]:
    """The files of a configuration: the file itself, or a directory's ``*.yaml``/``*.yml`` by name.

    Hidden files and subdirectories are ignored, so editors' swap files never count. Anything
    else with a YAML suffix is a file of the configuration: a FIFO, a device or a symbolic link
    (even one to a directory) is reported by the reader (`_check`), not skipped without a word.
    """
    if path.is_dir():
        return sorted(
            p
            for p in path.iterdir()
            if p.suffix in SUFFIXES and not p.name.startswith(".") and (p.is_symlink() or not p.is_dir())
        )
    return [path]


def _display(path: Path) -> str:
    return os.fspath(path)


def check_config(path: str | os.PathLike[str], cache: CacheStore | None = None) -> CheckResult:
    """Every error and warning of the configuration at ``path`` (file or directory).

    With ``cache`` (plan's, `cache.store`), the domains whose YAML did not change since an
    earlier check are taken from it (`incremental`): the result is the same.
    """
    with _collector_paused():
        if cache is not None:
            from .incremental import check_config_cached

            return check_config_cached(Path(path), cache)
        return _check(Path(path))


def read_config_files(root: Path) -> tuple[list[Path], list[bytes | None], list[Diagnostic]]:
    """The configuration's files and their bytes (None for one that cannot be read, with its
    diagnostic), bounded by `MAX_CONFIG_BYTES` in all."""
    diagnostics: list[Diagnostic] = []
    if not root.exists():
        return [], [], [Diagnostic(None, (), f"{_display(root)}: no such file or directory")]
    files = config_files(root)
    if not files:
        return [], [], [Diagnostic(Position(_display(root), 1, 1), (), "the directory holds no *.yaml files")]
    raws: list[bytes | None] = []
    budget = MAX_CONFIG_BYTES
    inside = root.is_dir()
    for file in files:
        name = _display(file)
        try:
            raw = read_bounded(file, limit=budget, follow_symlinks=not inside)
        except UnsafeFile as exc:
            reason = exc.reason
            if reason.startswith("larger than"):
                reason = f"the configuration's files hold more than {MAX_CONFIG_BYTES:,} bytes in all"
            elif inside and exc.errno == errno.ELOOP:
                reason = SYMLINK_IN_TREE
            diagnostics.append(Diagnostic(Position(name, 1, 1), (), f"cannot read: {reason}"))
            raws.append(None)
            continue
        if raw is None:
            diagnostics.append(Diagnostic(Position(name, 1, 1), (), "cannot read: no such file"))
        else:
            budget -= len(raw)
        raws.append(raw)
    return files, raws, diagnostics


def _check(root: Path) -> CheckResult:
    files, raws, diagnostics = read_config_files(root)
    if not files:
        return CheckResult(None, diagnostics)
    documents = parse_documents(files, raws, diagnostics)
    return check_documents(documents, tuple(_display(f) for f in files), diagnostics)[0]


def parse_documents(
    files: list[Path],
    raws: list[bytes | None],
    diagnostics: list[Diagnostic],
    anchor_lines: list[list[int]] | None = None,
) -> list[tuple[str, object]]:
    """Each readable file parsed (`read_yaml`), its problems added to ``diagnostics``;
    ``anchor_lines`` gets each file's anchor and alias lines."""
    documents: list[tuple[str, object]] = []
    for file, raw in zip(files, raws, strict=True):
        lines: list[int] = []
        if anchor_lines is not None:
            anchor_lines.append(lines)
        if raw is None:
            continue
        name = _display(file)
        value, problems = read_yaml(raw, name, lines)
        diagnostics.extend(problems)
        if value is not None or not problems:  # a syntax error leaves nothing to check
            documents.append((name, value))
    return documents


def check_documents(
    documents: list[tuple[str, object]], names: tuple[str, ...], diagnostics: list[Diagnostic]
) -> tuple[CheckResult, DocumentFacts]:
    """Merge, schema and semantic checks of parsed documents (`parse_documents`)."""
    doc, merge_problems = merge_documents(documents)
    diagnostics.extend(merge_problems)
    if doc is not None:  # an empty configuration is valid: it manages nothing
        diagnostics.extend(schema_errors(doc))
    spec, semantic, facts = build_spec_with_facts(doc, names)
    diagnostics.extend(semantic)
    return _result(spec, diagnostics, names), facts


def _result(spec: Spec | None, diagnostics: list[Diagnostic], files: tuple[str, ...]) -> CheckResult:
    ordered = sorted_diagnostics(diagnostics)
    errors = [d for d in ordered if d.severity == "error"]
    warnings = [d for d in ordered if d.severity == "warning"]
    return CheckResult(None if errors else spec, errors, warnings, files)


def load_spec(path: str | os.PathLike[str], cache: CacheStore | None = None) -> Spec:
    """The `Spec` of the configuration at ``path``; raises `ConfigErrors` listing every error."""
    result = check_config(path, cache)
    if result.errors or result.spec is None:
        raise ConfigErrors(result.errors, result.warnings)
    return result.spec


def merge_documents(documents: list[tuple[str, object]]) -> tuple[object, list[Diagnostic]]:
    """One document from several files; the same entry in two files is an error naming both.

    A single file is returned as it is. Otherwise the sections in `MERGED_SECTIONS` are merged
    entry by entry (a domain, an option, ``qmail.root``); other top-level keys may appear once.
    """
    present = [(name, doc) for name, doc in documents if doc is not None]
    if len(present) <= 1:
        return (present[0][1] if present else None), []
    problems: list[Diagnostic] = []
    first_name, first_doc = present[0]
    merged: YMap | None = None
    for name, doc in present:
        if not isinstance(doc, YMap):
            problems.append(
                Diagnostic(Position(name, 1, 1), (), "the configuration must be a mapping with keys such as 'domains'")
            )
            continue
        if merged is None:
            merged = YMap(doc.mark, name)
        for key, value in doc.items():
            if key not in merged:
                if key in MERGED_SECTIONS and isinstance(value, YMap):
                    section = YMap(value.mark, name)
                    for entry, entry_value in value.items():
                        section.put(entry, entry_value, value)
                    merged.put(key, section, doc)
                else:
                    merged.put(key, value, doc)
                continue
            existing = merged[key]
            if key in MERGED_SECTIONS and isinstance(existing, YMap) and isinstance(value, YMap):
                for entry, entry_value in value.items():
                    if entry in existing:
                        label = f"domain {entry!r} is defined" if key == "domains" else "defined"
                        problems.append(
                            Diagnostic(
                                value.key_position(entry),
                                (key, entry),
                                f"{label} twice: here and at {existing.key_position(entry)}",
                            )
                        )
                    else:
                        existing.put(entry, entry_value, value)
            else:
                problems.append(
                    Diagnostic(doc.key_position(key), (key,), f"defined twice: here and at {merged.key_position(key)}")
                )
    return (merged if merged is not None else first_doc), problems
