"""The layers stay visible: arrows only point down, and the runtime is standard library only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from vmreconcile.install import RUNTIME_PARTS

PACKAGE = REPO / "vmreconcile"
STDLIB = set(sys.stdlib_module_names)
#: Optional speed-ups a stdlib-only module may try to import (and must work without).
OPTIONAL = {"cdbx"}


def imports_of(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                module = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                names.add(module)
                if not node.module:  # "from .. import x": x is a module of that package
                    names.update(f"{module}.{a.name}" for a in node.names)
            else:
                names.add(node.module or "")
    return names


def runtime_files() -> list[Path]:
    files = []
    for part in RUNTIME_PARTS:
        path = PACKAGE / part
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


ALLOWED_PROJECT = (
    "vmreconcile.model",
    "vmreconcile.host",
    "vmreconcile.tables",
    "vmreconcile.formats",
    "vmreconcile.runtime",
)


@pytest.mark.parametrize("path", runtime_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_runtime_layers_import_only_the_standard_library_and_each_other(path):
    for name in imports_of(path):
        top = name.split(".")[0]
        if top == "vmreconcile":
            assert name == "vmreconcile" or name.startswith(ALLOWED_PROJECT), f"{path.name} imports {name}"
        else:
            assert top in STDLIB or top in OPTIONAL or top == "__future__", f"{path.name} imports {name}"


#: What each runtime sub-package may import of the others: login and delivery stand alone,
#: Courier's authpipe reuses the login core. The shared modules at ``runtime/`` level (launch,
#: process, selftest) import no sub-package; launch names the programs' modules as strings.
RUNTIME_SUBPACKAGES = {"login": set(), "courier": {"login"}, "delivery": set(), "dovecot": {"login", "courier"}}


def runtime_subpackage(path: Path) -> str | None:
    parts = path.relative_to(PACKAGE / "runtime").parts
    return parts[0] if len(parts) > 1 else None


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "runtime").rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE / "runtime"))
)
def test_runtime_subpackages_import_only_what_they_may(path):
    own = runtime_subpackage(path)
    allowed = RUNTIME_SUBPACKAGES[own] if own else set()
    for name in imports_of(path):
        parts = name.split(".")
        if parts[:2] != ["vmreconcile", "runtime"] or len(parts) < 3 or parts[2] not in RUNTIME_SUBPACKAGES:
            continue
        assert parts[2] == own or parts[2] in allowed, f"{path.relative_to(PACKAGE)} imports {name}"


def test_every_runtime_subpackage_is_known():
    found = {p.name for p in (PACKAGE / "runtime").iterdir() if (p / "__init__.py").exists()}
    assert found == set(RUNTIME_SUBPACKAGES)


def test_every_launcher_program_names_a_module_with_main():
    import importlib

    from vmreconcile.runtime.launch import PROGRAMS

    for program, module_name in PROGRAMS.items():
        assert module_name.startswith("vmreconcile.runtime."), program
        assert callable(importlib.import_module(module_name).main), program


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "formats").glob("*.py")) + [PACKAGE / "model.py"], ids=lambda p: p.name
)
def test_formats_and_model_import_nothing_above_them(path):
    for name in imports_of(path):
        if name.startswith("vmreconcile"):
            assert name == "vmreconcile" or name.startswith(("vmreconcile.model", "vmreconcile.formats")), name


def test_the_package_init_imports_nothing():
    assert imports_of(PACKAGE / "__init__.py") == set()
