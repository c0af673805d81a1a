"""install-runtime never destroys what it did not write: a foreign checkvpw survives it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.clirunner import cli_runner
from vmreconcile.cli.main import app
from vmreconcile.install import (
    INSTALL_RUNTIME_NOTE,
    INSTALLED_PROGRAMS,
    RUNTIME_MARKER,
    is_own_launcher,
    is_own_libdir,
)

#: Stands in for VMailMgr's C checkvpw: a program that says who it is.
FOREIGN = b"#!/bin/sh\necho vmailmgr-0.97-checkvpw\n"


def install(bindir: Path, *args: str):
    return cli_runner().invoke(app, ["install-runtime", "--bindir", str(bindir), *args], catch_exceptions=False)


def foreign_checkvpw(bindir: Path) -> Path:
    bindir.mkdir(parents=True, exist_ok=True)
    path = bindir / "checkvpw"
    path.write_bytes(FOREIGN)
    path.chmod(0o755)
    return path


def test_a_foreign_file_is_refused_by_name_and_nothing_is_written(tmp_path):
    bindir = tmp_path / "bin"
    checkvpw = foreign_checkvpw(bindir)
    result = install(bindir)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"vmreconcile: refusing to overwrite {checkvpw}: not written by vmreconcile")
    assert len(result.stderr.splitlines()) == 1
    assert sorted(os.listdir(bindir)) == ["checkvpw"] and checkvpw.read_bytes() == FOREIGN
    assert not (tmp_path / "lib").exists()


def test_replace_keeps_the_original_and_uninstall_puts_it_back(tmp_path):
    bindir = tmp_path / "bin"
    checkvpw = foreign_checkvpw(bindir)
    inode = checkvpw.stat().st_ino
    result = install(bindir, "--replace")
    assert result.exit_code == 0, result.output
    kept = [p for p in bindir.iterdir() if p.name.startswith("checkvpw.orig-")]
    assert len(kept) == 1 and kept[0].read_bytes() == FOREIGN and kept[0].stat().st_ino == inode
    assert f"kept {checkvpw} (not written by vmreconcile) as {kept[0]}; to put it back: " in result.stdout
    assert f"vmreconcile install-runtime --uninstall --bindir {bindir}" in result.stdout
    assert is_own_launcher(checkvpw, "checkvpw")

    again = install(bindir)  # its own launchers are recognised: no --replace needed, nothing kept twice
    assert again.exit_code == 0, again.output
    assert [p.name for p in bindir.iterdir() if ".orig-" in p.name] == [kept[0].name]

    removed = install(bindir, "--uninstall")
    assert removed.exit_code == 0, removed.output
    assert f"restored {checkvpw} from {kept[0].name}" in removed.stdout
    assert sorted(os.listdir(bindir)) == ["checkvpw"]
    assert checkvpw.read_bytes() == FOREIGN and checkvpw.stat().st_ino == inode
    assert subprocess.run([str(checkvpw)], capture_output=True, text=True).stdout == "vmailmgr-0.97-checkvpw\n"
    assert not (tmp_path / "lib" / "vmreconcile-runtime").exists()


def test_a_foreign_symlink_is_kept_as_a_symlink(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "vdeliver").symlink_to("/usr/lib/vmailmgr/vdeliver")
    assert install(bindir).exit_code == 1
    assert install(bindir, "--replace").exit_code == 0
    kept = next(p for p in bindir.iterdir() if p.name.startswith("vdeliver.orig-"))
    assert kept.is_symlink() and os.readlink(kept) == "/usr/lib/vmailmgr/vdeliver"
    install(bindir, "--uninstall")
    assert (bindir / "vdeliver").is_symlink() and os.readlink(bindir / "vdeliver") == "/usr/lib/vmailmgr/vdeliver"


def test_a_foreign_runtime_directory_is_refused_too(tmp_path):
    bindir = tmp_path / "bin"
    other = tmp_path / "lib" / "vmreconcile-runtime"
    other.mkdir(parents=True)
    (other / "notes.txt").write_text("someone else's\n")
    result = install(bindir)
    assert result.exit_code == 1 and str(other) in result.stderr
    assert install(bindir, "--replace").exit_code == 0
    assert other.is_symlink()
    kept = next(p for p in other.parent.iterdir() if p.name.startswith("vmreconcile-runtime.orig-"))
    assert (kept / "notes.txt").read_text() == "someone else's\n"
    install(bindir, "--uninstall")
    assert (other / "notes.txt").read_text() == "someone else's\n"


def test_uninstall_leaves_what_is_not_its_own(tmp_path):
    bindir = tmp_path / "bin"
    assert install(bindir).exit_code == 0
    assert all(is_own_launcher(bindir / p, p) for p in INSTALLED_PROGRAMS)
    (bindir / "vauthd").write_text("#!/bin/sh\n# an admin's own wrapper\n")
    removed = install(bindir, "--uninstall")
    assert removed.exit_code == 0
    assert sorted(os.listdir(bindir)) == ["vauthd"] and "an admin's own" in (bindir / "vauthd").read_text()
    assert is_own_launcher(bindir / "vauthd", "vauthd") is False


def test_a_launcher_edited_by_hand_or_for_another_program_is_not_its_own(tmp_path):
    bindir = tmp_path / "bin"
    install(bindir)
    text = (bindir / "checkvpw").read_text()
    assert is_own_launcher(bindir / "checkvpw", "checkvpw") and not is_own_launcher(bindir / "checkvpw", "vdeliver")
    (bindir / "checkvpw").write_text(text.replace("# checkvpw: written", "# checkvpw: edited"))
    assert not is_own_launcher(bindir / "checkvpw", "checkvpw")
    assert install(bindir).exit_code == 1


def foreign_tree(where: Path) -> Path:
    """An admin's (or another package's) tree that happens to hold vmreconcile/runtime/launch.py:
    what the older check took for install-runtime's own runtime copy."""
    (where / "vmreconcile" / "runtime").mkdir(parents=True)
    (where / "vmreconcile" / "runtime" / "launch.py").write_text("# someone else's copy\n")
    (where / "vmreconcile" / "cli").mkdir()
    (where / "vmreconcile" / "cli" / "main.py").write_text("# a full checkout\n")
    (where / "README").write_text("an admin's tree\n")
    return where


def tree_of(where: Path) -> dict[str, bytes]:
    return {str(p.relative_to(where)): p.read_bytes() for p in sorted(where.rglob("*")) if p.is_file()}


def test_a_foreign_libdir_holding_launch_py_survives_install_replace_and_uninstall(tmp_path):
    bindir, libdir = tmp_path / "bin", tmp_path / "opt" / "tree"
    before = tree_of(foreign_tree(libdir))
    removed = install(bindir, "--libdir", str(libdir), "--uninstall")
    assert removed.exit_code == 0, removed.output
    assert f"left {libdir} alone (not written by vmreconcile install-runtime)" in removed.stdout
    assert tree_of(libdir) == before

    refused = install(bindir, "--libdir", str(libdir))
    assert refused.exit_code == 1 and f"refusing to overwrite {libdir}: not written by" in refused.stderr
    assert tree_of(libdir) == before and not bindir.exists()

    assert install(bindir, "--libdir", str(libdir), "--replace").exit_code == 0
    kept = next(p for p in libdir.parent.iterdir() if p.name.startswith("tree.orig-"))
    assert tree_of(kept) == before and libdir.is_symlink()
    assert install(bindir, "--libdir", str(libdir), "--uninstall").exit_code == 0
    assert not libdir.is_symlink() and tree_of(libdir) == before
    assert sorted(os.listdir(libdir.parent)) == ["tree"]


def test_a_foreign_symlinked_libdir_keeps_its_target_through_replace_and_uninstall(tmp_path):
    bindir, libdir = tmp_path / "bin", tmp_path / "lib" / "vmreconcile-runtime"
    elsewhere = foreign_tree(tmp_path / "srv" / "admin")
    before = tree_of(elsewhere)
    libdir.parent.mkdir(parents=True)
    libdir.symlink_to(elsewhere)
    assert install(bindir, "--uninstall").exit_code == 0
    assert libdir.is_symlink() and tree_of(elsewhere) == before
    assert install(bindir).exit_code == 1
    assert install(bindir, "--replace").exit_code == 0
    assert tree_of(elsewhere) == before  # the old switch removed the tree the foreign link pointed at
    assert install(bindir, "--uninstall").exit_code == 0
    assert os.readlink(libdir) == str(elsewhere) and tree_of(elsewhere) == before


def test_a_link_in_its_naming_scheme_to_a_tree_it_did_not_write_is_foreign(tmp_path):
    bindir, libdir = tmp_path / "bin", tmp_path / "lib" / "vmreconcile-runtime"
    look_alike = foreign_tree(tmp_path / "lib" / ".vmreconcile-runtime.abcd1234")
    before = tree_of(look_alike)
    libdir.symlink_to(look_alike.name)
    assert not is_own_libdir(libdir)
    assert install(bindir, "--uninstall").exit_code == 0
    assert install(bindir).exit_code == 1
    assert tree_of(look_alike) == before


def test_its_marker_is_what_makes_a_runtime_copy_its_own(tmp_path):
    bindir, libdir = tmp_path / "bin", tmp_path / "lib" / "vmreconcile-runtime"
    assert install(bindir).exit_code == 0
    version = libdir.resolve()
    marker = version / RUNTIME_MARKER
    assert marker.read_text() == INSTALL_RUNTIME_NOTE + "\n" and marker.stat().st_mode & 0o777 == 0o644
    assert is_own_libdir(libdir)
    marker.write_text("edited\n")
    assert not is_own_libdir(libdir)
    marker.unlink()
    (version / "vmreconcile" / "cli").mkdir()  # no marker and more than a runtime copy: not ours
    assert not is_own_libdir(libdir)
    assert install(bindir, "--uninstall").exit_code == 0 and version.is_dir()


def test_an_unmarked_copy_of_an_older_install_is_upgraded_without_replace(tmp_path):
    bindir, libdir = tmp_path / "bin", tmp_path / "lib" / "vmreconcile-runtime"
    assert install(bindir).exit_code == 0
    old = libdir.resolve()
    (old / RUNTIME_MARKER).unlink()  # what install-runtime wrote before it marked its copies
    assert is_own_libdir(libdir)
    again = install(bindir)
    assert again.exit_code == 0, again.output
    assert not old.exists() and (libdir.resolve() / RUNTIME_MARKER).is_file()
    assert sorted(os.listdir(libdir.parent)) == sorted(["vmreconcile-runtime", libdir.resolve().name])
