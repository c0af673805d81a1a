#!/usr/bin/python3
"""Write what the package ships besides the Python package, from the code's own lists.

Usage (debian/rules, at build time): python3 -I debian/extras.py OUTDIR

  OUTDIR/lib/<program>       one launcher per runtime program (vmreconcile.install.INSTALLED_PROGRAMS),
                             plus vmreconcile-apply, for /usr/lib/vmreconcile/
  OUTDIR/man/*               the man pages (man/manpages.py)
  OUTDIR/completion/vmreconcile   bash completion, from the CLI itself
  OUTDIR/units/*             the systemd units of examples/systemd/; a program's own units
                             (vauthd.socket, vauthd.service) only when that program is listed

Nothing here names a runtime program: a new program (vauthd) or a module moved by a refactor
needs no change in debian/. The launchers are ``vmreconcile install-runtime``'s own
(`launcher_text`), pointed at /usr/lib/vmreconcile/python: a directory holding nothing but a
link to the packaged ``vmreconcile`` (see debian/README.source for why not dist-packages).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "man"))

LIBEXEC = Path("/usr/lib/vmreconcile")
#: sys.path entry of the launchers: only a symlink to /usr/lib/python3/dist-packages/vmreconcile.
RUNTIME_PATH = LIBEXEC / "python"
PYTHON = "/usr/bin/python3"
UNITS = REPO / "examples" / "systemd"
UNIT_SUFFIXES = (".service", ".socket", ".timer")
APPLY_SCRIPT = UNITS / "vmreconcile-apply"
LAUNCHER_NOTE = "the Debian package's launcher; do not edit."


def write_launchers(outdir: Path, programs: tuple[str, ...]) -> None:
    from vmreconcile.install import launcher_text

    outdir.mkdir(parents=True)
    for program in programs:
        text = launcher_text(program, PYTHON, RUNTIME_PATH, None, note=LAUNCHER_NOTE)
        (outdir / program).write_text(text)
        (outdir / program).chmod(0o755)
    shutil.copyfile(APPLY_SCRIPT, outdir / APPLY_SCRIPT.name)
    (outdir / APPLY_SCRIPT.name).chmod(0o755)


def write_completion(outdir: Path) -> None:
    """typer's bash completion script, as ``vmreconcile --show-completion bash`` prints it."""
    from vmreconcile.cli.main import app

    outdir.mkdir(parents=True)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.suppress(SystemExit):
        app(prog_name="vmreconcile", args=["--show-completion", "bash"])
    script = printed.getvalue()
    if "complete " not in script or "vmreconcile" not in script:
        raise SystemExit(f"debian/extras.py: no bash completion script from the CLI: {script!r}")
    (outdir / "vmreconcile").write_text(script if script.endswith("\n") else script + "\n")


def select_units(programs: tuple[str, ...]) -> list[Path]:
    """The units of examples/systemd to ship: vmreconcile's own, and a runtime program's
    (``vauthd.socket``, ``vauthd.service``) only when that program is installed."""
    chosen = []
    for unit in sorted(UNITS.iterdir()):
        if unit.suffix not in UNIT_SUFFIXES:
            continue
        owner = unit.stem.removesuffix("@")
        if owner.startswith("vmreconcile-") or owner in programs:
            chosen.append(unit)
        else:
            sys.stderr.write(f"debian/extras.py: not shipping {unit.name}: {owner!r} is no installed runtime program\n")
    return chosen


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: debian/extras.py OUTDIR\n")
        return 2
    import manpages  # man/manpages.py

    from vmreconcile.install import INSTALLED_PROGRAMS

    outdir = Path(argv[1])
    shutil.rmtree(outdir, ignore_errors=True)
    write_launchers(outdir / "lib", INSTALLED_PROGRAMS)
    try:
        manpages.build(outdir / "man")
    except manpages.BuildError as error:
        sys.stderr.write(f"man/manpages.py: {error}\n")
        return 1
    write_completion(outdir / "completion")
    (outdir / "units").mkdir()
    for unit in select_units(INSTALLED_PROGRAMS):
        shutil.copyfile(unit, outdir / "units" / unit.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
