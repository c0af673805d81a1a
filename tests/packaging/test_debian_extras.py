"""debian/extras.py: what the package ships besides the Python package, taken from the code's lists.

The launchers are install-runtime's own, one per installed runtime program; a runtime program's
systemd units ship only when the program exists (vauthd before and after it is added); the
bash completion is the CLI's and completes; debian/changelog and the code agree on the version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checkout_cli import CLI_DIR, REPO
from tests.conftest import load_script
from vmreconcile import __version__
from vmreconcile.install import INSTALLED_PROGRAMS, launcher_text

extras = load_script(REPO / "debian" / "extras.py", "vmreconcile_debian_extras")


def test_one_launcher_per_installed_program_from_install_runtimes_writer(tmp_path):
    extras.write_launchers(tmp_path / "lib", INSTALLED_PROGRAMS)
    names = sorted(p.name for p in (tmp_path / "lib").iterdir())
    assert names == sorted([*INSTALLED_PROGRAMS, "vmreconcile-apply"])
    for program in INSTALLED_PROGRAMS:
        launcher = tmp_path / "lib" / program
        assert os.access(launcher, os.X_OK)
        text = launcher.read_text()
        expected = launcher_text(
            program, "/usr/bin/python3", Path("/usr/lib/vmreconcile/python"), None, extras.LAUNCHER_NOTE
        )
        assert text == expected
        assert text.startswith("#!/usr/bin/python3 -IS\n")
        assert "sys.path.insert(0, '/usr/lib/vmreconcile/python')" in text
        assert "environ" not in text and "root=None" in text


def make_units(directory: Path, *names: str) -> None:
    directory.mkdir()
    for name in names:
        (directory / name).write_text("[Unit]\n")


def test_a_programs_units_ship_only_when_the_program_is_installed(tmp_path, monkeypatch, capsys):
    units = tmp_path / "systemd"
    make_units(
        units,
        "vmreconcile-apply.service",
        "vmreconcile-apply.timer",
        "vmreconcile-apply",
        "vauthd.socket",
        "vauthd.service",
    )
    monkeypatch.setattr(extras, "UNITS", units)
    before = [p.name for p in extras.select_units(("checkvpw", "vdeliver"))]
    assert before == ["vmreconcile-apply.service", "vmreconcile-apply.timer"]
    assert "not shipping vauthd.service" in capsys.readouterr().err
    after = [p.name for p in extras.select_units(("checkvpw", "vauthd", "vdeliver"))]
    assert after == ["vauthd.service", "vauthd.socket", "vmreconcile-apply.service", "vmreconcile-apply.timer"]


def test_the_repositorys_units_are_shipped():
    shipped = [p.name for p in extras.select_units(INSTALLED_PROGRAMS)]
    assert {"vmreconcile-apply.service", "vmreconcile-apply.timer"} <= set(shipped)
    if "vauthd" in INSTALLED_PROGRAMS:
        assert {"vauthd.socket", "vauthd.service"} <= set(shipped)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_bash_completion_completes_commands_and_options(tmp_path):
    extras.write_completion(tmp_path / "completion")
    script = tmp_path / "completion" / "vmreconcile"

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        program = (
            f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
            '_vmreconcile_completion vmreconcile; printf "%s\\n" "${COMPREPLY[@]}"'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VMRECONCILE", "_VMRECONCILE"))}
        env["PATH"] = f"{CLI_DIR}:{env['PATH']}"
        done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return [line.split(":")[0] for line in done.stdout.split()]

    assert "plan" in complete("vmreconcile", "pl")
    assert "--format" in complete("vmreconcile", "plan", "--for")


def test_debian_changelog_is_at_the_codes_version():
    first = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    assert first.startswith(f"vmreconcile ({__version__}) "), (first, __version__)


def test_the_script_writes_everything_the_install_files_name(tmp_path):
    pytest.importorskip("docutils", reason="man pages need docutils (test extra; Debian: python3-docutils)")
    outdir = tmp_path / "extras"
    done = subprocess.run(
        [sys.executable, str(REPO / "debian" / "extras.py"), str(outdir)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    for line in (REPO / "debian" / "vmreconcile.install").read_text().splitlines():
        source = line.split()[0]
        if source.startswith("debian/extras/"):
            pattern = source.removeprefix("debian/extras/")
            assert list(outdir.glob(pattern)), f"{source} (debian/vmreconcile.install) matches nothing"
    assert sorted(p.name for p in (outdir / "man").iterdir()) == sorted(
        ["vmreconcile.1", "vmreconcile.yaml.5", *(f"{p}.8" for p in INSTALLED_PROGRAMS)]
    )
