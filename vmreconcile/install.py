"""``vmreconcile install-runtime``: the launchers that qmail, Dovecot and Courier execute.

The management side lives in a venv (possibly pyenv's interpreter under ``/root``, which base
users cannot run). The runtime must run as root *and* as base users, start fast and
import nothing but the standard library, so it is installed as a plain copy of the stdlib-only
layers, byte-compiled by the interpreter that will run it, and started by tiny launchers that
exec that interpreter with ``-I -S`` and carry the config root as a literal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .atomic import write_file
from .runtime.launch import PROGRAMS

PACKAGE_DIR = Path(__file__).resolve().parent
#: The stdlib-only layers the runtime may import (tests/test_layers.py keeps this honest).
RUNTIME_PARTS = ("__init__.py", "model.py", "host.py", "tables.py", "formats", "runtime")
DEFAULT_PYTHON = "/usr/bin/python3"
INSTALLED_PROGRAMS = tuple(p for p in PROGRAMS if p != "runtime-selftest")


class InstallError(RuntimeError):
    pass


def default_libdir(bindir: Path) -> Path:
    return bindir.parent / "lib" / "vmreconcile-runtime"


INSTALL_RUNTIME_NOTE = "written by 'vmreconcile install-runtime'; re-run it instead of editing."


def launcher_text(program: str, python: str, libdir: Path, root: str | None, note: str = INSTALL_RUNTIME_NOTE) -> str:
    """The whole launcher script. ``root`` is baked in as a literal, never read from env.

    ``note`` says where the launcher came from (the Debian package writes its own at build time).
    """
    return (
        f"#!{python} -IS\n"
        f"# {program}: {note}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(libdir)!r})\n"
        "from vmreconcile.runtime.launch import run\n"
        f"run({program!r}, root={root!r})\n"
    )


def _copy_runtime(target: Path) -> None:
    package = target / "vmreconcile"
    package.mkdir(parents=True)
    for part in RUNTIME_PARTS:
        source = PACKAGE_DIR / part
        if source.is_dir():
            shutil.copytree(source, package / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, package / part)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _switch_to(libdir: Path, version: Path) -> None:
    """Point ``libdir`` (a symlink) at the new ``version`` directory in one ``rename``.

    A login or delivery starting at any moment imports either the old or the new runtime,
    never a missing one; the old version directory is removed afterwards.
    """
    previous = libdir.parent / os.readlink(libdir) if libdir.is_symlink() else None
    legacy = None
    if libdir.exists() and not libdir.is_symlink():  # a plain directory from an older install
        legacy = libdir.with_name(libdir.name + ".old")
        shutil.rmtree(legacy, ignore_errors=True)
        os.rename(libdir, legacy)
    link = libdir.with_name(f".{libdir.name}.link")
    link.unlink(missing_ok=True)
    os.symlink(version.name, link)
    os.replace(link, libdir)
    for old in (previous, legacy):
        if old is not None and old.resolve() != version.resolve():
            shutil.rmtree(old, ignore_errors=True)


def install_runtime(
    bindir: Path,
    root: str | None = None,
    python: str = DEFAULT_PYTHON,
    libdir: Path | None = None,
    programs: tuple[str, ...] = INSTALLED_PROGRAMS,
) -> list[Path]:
    """Install the runtime copy and one launcher per program; return the launcher paths."""
    bindir = Path(bindir).resolve()
    libdir = Path(libdir).resolve() if libdir else default_libdir(bindir)
    if not os.access(python, os.X_OK):
        raise InstallError(f"interpreter {python} is not executable")
    root = str(Path(root).resolve()) if root is not None else None
    bindir.mkdir(parents=True, exist_ok=True)
    libdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{libdir.name}.", dir=libdir.parent))
    try:
        staging.chmod(0o755)
        _copy_runtime(staging)
        compiled = subprocess.run(
            [python, "-I", "-S", "-m", "compileall", "-q", "-j", "1", str(staging)],
            capture_output=True,
            text=True,
            check=False,
        )
        if compiled.returncode != 0:
            raise InstallError(f"{python} could not byte-compile the runtime: {compiled.stdout}{compiled.stderr}")
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        _switch_to(libdir, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    written = []
    for program in programs:
        path = bindir / program
        write_file(path, launcher_text(program, python, libdir, root).encode("utf-8"), mode=0o755)
        written.append(path)
    return written
