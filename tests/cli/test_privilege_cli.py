"""Commands that need root say so in one line and point at --root, never with raw errno text.

Run as a throwaway non-root user against the real paths (nothing there is writable for it, so
nothing of the machine changes), and against a --root tree it cannot write.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import build_step_root, cli_as_user, requires_root

pytestmark = requires_root


@pytest.fixture
def user_and_config(public_tmp, make_system_user):
    user = make_system_user()
    config = public_tmp / "mail.yaml"
    config.write_text(
        f"domains:\n  mydomain.org:\n    base_user: {user.name}\n    users:\n      me: {{password: null}}\n"
    )
    config.chmod(0o644)
    return user, config, public_tmp


def assert_one_clear_line(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Errno" not in result.stderr and "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def test_apply_without_root_says_it_needs_root_and_suggests_root_dir(user_and_config):
    user, config, cwd = user_and_config
    result = cli_as_user(user, "apply", str(config), "--yes", cwd=cwd)
    assert_one_clear_line(result, "vmreconcile: apply needs root: cannot access /run/vmreconcile", "--root DIR")


def test_rollback_without_root_says_it_needs_root(user_and_config):
    user, _, cwd = user_and_config
    result = cli_as_user(user, "rollback", "1", "--yes", cwd=cwd)
    assert_one_clear_line(result, "vmreconcile: rollback needs root: ", "--root DIR")


def test_a_root_tree_the_user_cannot_write_is_named(user_and_config, tmp_path):
    user, config, cwd = user_and_config
    root = cwd / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(f"{user.name}:x:{user.uid}:{user.gid}::/home/{user.name}:/bin/sh\n")
    (root / "home" / user.name).mkdir(parents=True)
    os.chmod(root, 0o755)
    result = cli_as_user(user, "--root", str(root), "apply", str(config), "--yes", cwd=cwd)
    assert_one_clear_line(result, "permission denied inside the --root tree")


def test_install_runtime_into_a_root_owned_bindir_says_what_to_do(user_and_config):
    user, _, cwd = user_and_config
    bindir = cwd / "rootbin"
    bindir.mkdir()
    os.chmod(bindir, 0o755)
    result = cli_as_user(user, "install-runtime", "--bindir", str(bindir), cwd=cwd)
    assert_one_clear_line(result, "install-runtime cannot write", "run it as root, or give a --bindir")


@pytest.mark.parametrize("command", ["show", "export"])
def test_a_home_the_user_cannot_read_is_one_line_naming_the_table(user_and_config, command):
    user, _, cwd = user_and_config
    root = cwd / "root"
    build_step_root("10-catchall", root)
    for path in (cwd, root, root / "home"):
        path.chmod(0o755)
    result = cli_as_user(user, "--root", str(root), command, cwd=cwd)
    assert_one_clear_line(
        result,
        # the home itself is what it cannot open (each home's files are read through it)
        f"vmreconcile: {command} cannot access {root}/home/vbase1: permission denied inside the --root",
    )
