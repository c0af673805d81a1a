"""``vmreconcile install-runtime``: the launchers that qmail, Dovecot and Courier execute.

The management side lives in a venv (possibly pyenv's interpreter under ``/root``, which base
users cannot run). The runtime must run as root *and* as base users, start fast and
import nothing but the standard library, so it is installed as a plain copy of the stdlib-only
layers, byte-compiled by the interpreter that will run it, and started by tiny launchers that
exec that interpreter with ``-I -S`` and carry the config root as a literal.

It never destroys what it did not write. Its launchers carry a marker line
(`launcher_text`), and its runtime copy is a symlink to a version directory it named and marked
(`RUNTIME_MARKER`, see `is_own_libdir`); anything else in their place (VMailMgr's own ``checkvpw`` in ``/usr/local/bin``) is *foreign*: the
install is refused, naming it, before anything is written, unless ``replace``. Then each
foreign file is kept as ``NAME.orig-<UTC time>`` (a hard link, so the old program stays in
place until the new launcher replaces it in one rename) and `uninstall_runtime` puts it back.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .atomic import write_file
from .runtime.launch import PROGRAMS

PACKAGE_DIR = Path(__file__).resolve().parent
#: The stdlib-only layers the runtime may import (tests/test_layers.py keeps this honest).
RUNTIME_PARTS = ("__init__.py", "model.py", "host.py", "tables.py", "formats", "runtime")
DEFAULT_PYTHON = "/usr/bin/python3"
INSTALLED_PROGRAMS = tuple(p for p in PROGRAMS if p != "runtime-selftest")


#: What a kept foreign file is renamed to: ``checkvpw.orig-20261124T185156Z``.
ORIG = ".orig-"
#: A launcher is a few hundred bytes; anything bigger is not one of ours.
_LAUNCHER_MAX = 4096

Log = Callable[[str], None]


class InstallError(RuntimeError):
    pass


class ForeignFiles(InstallError):
    """Files in the way that install-runtime did not write; nothing was written."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        names = ", ".join(str(p) for p in paths)
        super().__init__(
            f"refusing to overwrite {names}: not written by vmreconcile install-runtime (VMailMgr's own "
            "programs?); nothing was written. Pass --replace to keep each as NAME.orig-<time> and install "
            "the launchers (install-runtime --uninstall puts them back), or choose another --bindir"
        )


def _unfollowed(path: Path) -> Path:
    """``path`` made absolute with its parents resolved but not ``path`` itself: ``--libdir``
    names the symlink install-runtime switches, never the directory a link there points at."""
    path = Path(os.path.abspath(path))
    return path.parent.resolve() / path.name


def default_libdir(bindir: Path) -> Path:
    return bindir.parent / "lib" / "vmreconcile-runtime"


#: The note on an install-runtime launcher's second line: how an install recognises its own.
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


#: The file in a version directory that says install-runtime wrote it (its content is
#: `INSTALL_RUNTIME_NOTE`). Outside the package, so nothing imports it; `is_own_libdir` needs it
#: before anything under the runtime copy is ever removed.
RUNTIME_MARKER = ".vmreconcile-install-runtime"
#: ``tempfile.mkdtemp``'s random part of a version directory's name (``.vmreconcile-runtime.XXXXXXXX``).
_VERSION_SUFFIX = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _copy_runtime(target: Path) -> None:
    (target / RUNTIME_MARKER).write_text(INSTALL_RUNTIME_NOTE + "\n", encoding="utf-8")
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
    never a missing one. The old version directory is removed afterwards only when it is
    install-runtime's own (`own_version`): a foreign symlink kept by ``--replace`` still
    points at a tree that is not ours to delete.
    """
    previous = own_version(libdir)
    link = libdir.with_name(f".{libdir.name}.link")
    link.unlink(missing_ok=True)
    os.symlink(version.name, link)
    os.replace(link, libdir)
    if previous is not None and previous != version:
        shutil.rmtree(previous, ignore_errors=True)


def is_own_launcher(path: Path, program: str) -> bool:
    """True when ``path`` is a launcher install-runtime wrote for ``program`` (a small regular
    file whose second line is the marker; a symlink never is)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.read(fd, _LAUNCHER_MAX + 1)
    finally:
        os.close(fd)
    lines = head.split(b"\n")
    return len(head) <= _LAUNCHER_MAX and len(lines) > 2 and lines[1] == f"# {program}: {INSTALL_RUNTIME_NOTE}".encode()


def _is_marker(path: Path) -> bool:
    """True when ``path`` is a small regular file (not a symlink) holding exactly the note."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return (
            stat.S_ISREG(os.fstat(fd).st_mode) and os.read(fd, _LAUNCHER_MAX) == (INSTALL_RUNTIME_NOTE + "\n").encode()
        )
    finally:
        os.close(fd)


def _is_unmarked_version(version: Path) -> bool:
    """True for a version directory written before `RUNTIME_MARKER` existed: exactly the
    layout install-runtime made then (``vmreconcile/`` holding nothing but `RUNTIME_PARTS` and
    byte-code), so an upgrade needs no ``--replace``; any other tree is not one."""
    try:
        if os.listdir(version) != ["vmreconcile"]:
            return False
        parts = set(os.listdir(version / "vmreconcile"))
    except OSError:
        return False
    launch = version / "vmreconcile" / "runtime" / "launch.py"
    return parts <= {*RUNTIME_PARTS, "__pycache__"} and launch.is_file() and not launch.is_symlink()


def own_version(libdir: Path) -> Path | None:
    """The version directory ``libdir`` points at, when both are install-runtime's; else None.

    Its own is exactly what it writes: ``libdir`` a symlink to a sibling named by
    ``mkdtemp`` (``.<libdir name>.XXXXXXXX``), that sibling a real directory carrying
    `RUNTIME_MARKER` (or an unmarked one of an older install, `_is_unmarked_version`). A
    plain directory, a symlink elsewhere or a tree that merely contains
    ``vmreconcile/runtime/launch.py`` is foreign: never replaced without ``--replace``, never
    deleted.
    """
    try:
        target = os.readlink(libdir)
    except OSError:  # missing, or not a symlink
        return None
    prefix = f".{libdir.name}."
    suffix = target[len(prefix) :]
    if not target.startswith(prefix) or len(suffix) != 8 or not set(suffix) <= _VERSION_SUFFIX:
        return None
    version = libdir.parent / target
    try:
        if not stat.S_ISDIR(os.lstat(version).st_mode):
            return None
    except OSError:
        return None
    if _is_marker(version / RUNTIME_MARKER) or _is_unmarked_version(version):
        return version
    return None


def is_own_libdir(libdir: Path) -> bool:
    """True when ``libdir`` is install-runtime's own runtime copy (`own_version`)."""
    return own_version(libdir) is not None


def foreign_files(bindir: Path, libdir: Path, programs: tuple[str, ...]) -> list[Path]:
    """What stands where the install would write and is not its own."""
    out = [bindir / p for p in programs if os.path.lexists(bindir / p) and not is_own_launcher(bindir / p, p)]
    if os.path.lexists(libdir) and not is_own_libdir(libdir):
        out.append(libdir)
    return out


def utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def keep_original(path: Path, stamp: str) -> Path:
    """Keep ``path`` as ``path.orig-<stamp>`` (``-2``, ``-3`` ... if taken): a hard link for a
    file (the original stays in place until its replacement is renamed over it), a rename
    for a directory."""
    for n in range(1, 100):
        kept = path.with_name(f"{path.name}{ORIG}{stamp}" + (f"-{n}" if n > 1 else ""))
        if os.path.lexists(kept):
            continue
        if path.is_dir() and not path.is_symlink():
            os.rename(path, kept)
        else:
            os.link(path, kept, follow_symlinks=False)
        return kept
    raise InstallError(f"{path}: too many kept originals beside it")


def originals(path: Path) -> list[Path]:
    """The kept originals of ``path``, oldest first."""
    prefix = f"{path.name}{ORIG}"
    try:
        names = sorted(n for n in os.listdir(path.parent) if n.startswith(prefix))
    except FileNotFoundError:
        return []
    return [path.parent / n for n in names]


def install_runtime(
    bindir: Path,
    root: str | None = None,
    python: str = DEFAULT_PYTHON,
    libdir: Path | None = None,
    programs: tuple[str, ...] = INSTALLED_PROGRAMS,
    replace: bool = False,
    log: Log = lambda _message: None,
) -> list[Path]:
    """Install the runtime copy and one launcher per program; return the launcher paths.

    Raises `ForeignFiles` (before writing anything) when a file it did not write is in the
    way, unless ``replace``: then each is kept (`keep_original`) and ``log`` says how to
    restore it.
    """
    bindir = Path(bindir).resolve()
    libdir = _unfollowed(libdir) if libdir else default_libdir(bindir)
    if not os.access(python, os.X_OK):
        raise InstallError(f"interpreter {python} is not executable")
    root = str(Path(root).resolve()) if root is not None else None
    foreign = foreign_files(bindir, libdir, programs)
    if foreign and not replace:
        raise ForeignFiles(foreign)
    stamp = utc_stamp()
    for path in foreign:
        kept = keep_original(path, stamp)
        log(
            f"kept {path} (not written by vmreconcile) as {kept}; to put it back: "
            f"vmreconcile install-runtime --uninstall --bindir {bindir}  (or: mv {kept} {path})"
        )
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


def uninstall_runtime(
    bindir: Path, libdir: Path | None = None, programs: tuple[str, ...] = tuple(PROGRAMS)
) -> list[str]:
    """Remove the launchers and the runtime copy install-runtime wrote, and put back what it
    kept (the newest ``NAME.orig-*``); anything else is left alone. Returns what was done."""
    bindir = Path(bindir).resolve()
    libdir = _unfollowed(libdir) if libdir else default_libdir(bindir)
    done: list[str] = []
    for program in programs:
        path = bindir / program
        kept = originals(path)
        if os.path.lexists(path) and not is_own_launcher(path, program):
            if kept:
                done.append(f"left {path} alone (not written by vmreconcile); {kept[-1]} is still kept")
            continue
        if kept:
            os.rename(kept[-1], path)  # one rename over the launcher: never a moment without one
            done.append(f"restored {path} from {kept[-1].name}")
        elif os.path.lexists(path):
            path.unlink()
            done.append(f"removed {path}")
    version = own_version(libdir)
    if version is not None:
        libdir.unlink()
        shutil.rmtree(version, ignore_errors=True)
        done.append(f"removed the runtime copy {libdir}")
    elif os.path.lexists(libdir):
        done.append(f"left {libdir} alone (not written by vmreconcile install-runtime)")
    kept_lib = originals(libdir)
    if kept_lib and not os.path.lexists(libdir):
        os.rename(kept_lib[-1], libdir)
        done.append(f"restored {libdir} from {kept_lib[-1].name}")
    return done
