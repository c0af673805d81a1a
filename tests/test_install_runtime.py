"""Runtime launchers: isolated interpreter, baked root, runnable by a non-root base user."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import IS_ROOT
from vmreconcile.install import install_runtime, launcher_text

SELFTEST = ("runtime-selftest",)


def selftest(bindir, *args, env=None, user=None, cwd=None):
    cmd = [str(bindir / "runtime-selftest"), *args]
    kwargs = {}
    if user is not None:
        kwargs = {"user": user.uid, "group": user.gid, "extra_groups": []}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, **kwargs)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_launcher_runs_the_copied_runtime_with_the_baked_root(tmp_path):
    bindir, root = tmp_path / "bin", tmp_path / "root"
    install_runtime(bindir, root=str(root), programs=SELFTEST)
    out = selftest(bindir, "x")
    assert out["package"] == str(tmp_path / "lib" / "vmreconcile-runtime" / "vmreconcile")
    assert out["root"] == str(root)
    assert out["isolated"] == "1 no_site=1"
    assert out["modules"] == ""  # no yaml, typer, jsonschema, deepdiff, passlib, site


def test_the_root_is_not_taken_from_the_environment(tmp_path):
    bindir = tmp_path / "bin"
    install_runtime(bindir, root=None, programs=SELFTEST)
    out = selftest(bindir, env={**os.environ, "VMRECONCILE_ROOT": str(tmp_path)})
    assert out["root"] == "/"


def test_pythonpath_pth_files_and_the_current_directory_cannot_inject_code(tmp_path):
    bindir = tmp_path / "bin"
    install_runtime(bindir, programs=SELFTEST)
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "pwned"
    payload = f"open({str(marker)!r}, 'w').write('x')\n"
    for name in ("vmreconcile", "sys", "importlib", "os"):
        (evil / name).mkdir(exist_ok=True)
        (evil / name / "__init__.py").write_text(payload)
        (evil / f"{name}.py").write_text(payload)
    (evil / "sitecustomize.py").write_text(payload)
    (evil / "usercustomize.py").write_text(payload)
    (evil / "evil.pth").write_text(f"import os; {payload}")
    env = {
        **os.environ,
        "PYTHONPATH": str(evil),
        "PYTHONSTARTUP": str(evil / "os.py"),
        "PYTHONHOME": "",
        "PYTHONUSERBASE": str(evil),
        "PYTHONINSPECT": "",
    }
    env.pop("PYTHONHOME")
    out = selftest(bindir, env=env, cwd=evil)
    assert out["package"].startswith(str(tmp_path / "lib"))
    assert not marker.exists()


def test_launcher_text_is_small_and_carries_no_environment_lookups(tmp_path):
    text = launcher_text("checkvpw", "/usr/bin/python3", tmp_path, "/srv/root")
    assert text.startswith("#!/usr/bin/python3 -IS\n")
    assert "environ" not in text and "getenv" not in text
    assert "run('checkvpw', root='/srv/root')" in text


def test_runtime_copy_is_world_readable_and_byte_compiled(tmp_path):
    install_runtime(tmp_path / "bin", programs=SELFTEST)
    lib = tmp_path / "lib" / "vmreconcile-runtime"
    for path in lib.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o755 if path.is_dir() else 0o644), path
    assert list(lib.rglob("*.cpython-311.pyc"))
    assert not (lib / "vmreconcile" / "cli").exists() and not (lib / "vmreconcile" / "desired").exists()


def test_reinstall_replaces_the_runtime_atomically(tmp_path):
    install_runtime(tmp_path / "bin", programs=SELFTEST)
    stale = tmp_path / "lib" / "vmreconcile-runtime" / "vmreconcile" / "stale.py"
    stale.write_text("x = 1\n")
    first = (tmp_path / "lib" / "vmreconcile-runtime").resolve()
    install_runtime(tmp_path / "bin", programs=SELFTEST)
    libdir = tmp_path / "lib" / "vmreconcile-runtime"
    assert libdir.is_symlink() and libdir.resolve() != first  # switched with one rename
    assert not stale.exists() and not first.exists()
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == sorted(
        ["vmreconcile-runtime", libdir.resolve().name]
    )
    assert selftest(tmp_path / "bin")["package"].startswith(str(libdir))


@pytest.mark.skipif(not IS_ROOT, reason="running a launcher as another user needs root; CI runs as root")
def test_a_non_root_base_user_can_run_a_launcher(public_tmp, make_system_user):
    user = make_system_user()
    install_runtime(public_tmp / "bin", root=str(public_tmp / "root"), programs=SELFTEST)
    out = selftest(public_tmp / "bin", user=user, cwd="/")
    assert out["uid"].startswith(str(user.uid))


def test_install_runtime_command_writes_every_launcher(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vmreconcile",
            "--root",
            str(tmp_path / "root"),
            "install-runtime",
            "--bindir",
            str(tmp_path / "bin"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    for program in ("checkvpw", "authvmailmgr", "vauthenticate", "vdeliver", "vauthd"):
        assert (tmp_path / "bin" / program).stat().st_mode & 0o111
        assert f"root={str(tmp_path / 'root')!r}" in (tmp_path / "bin" / program).read_text()
