"""`vmreconcile export`: the live system as YAML that validates; --domain, --output, errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.clirunner import cli_runner
from tests.conftest import STEPS, build_step_root
from vmreconcile.cli.main import app
from vmreconcile.desired.load import check_config


def run(*args: str):
    return cli_runner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("step", [STEPS[0], STEPS[-1]])
def test_export_prints_yaml_that_validates(step, tmp_path):
    root = tmp_path / "root"
    build_step_root(step, root)
    result = run("--root", str(root), "export")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# vmreconcile configuration exported from the live system.\n")
    config = tmp_path / "out.yaml"
    config.write_text(result.stdout)
    checked = run("validate", str(config))
    assert checked.exit_code == 0 and "valid: 1 domain" in checked.stdout.splitlines()[-1]


def test_output_file_and_domain_filter(tmp_path):
    root = tmp_path / "root"
    build_step_root("10-catchall", root)
    out = tmp_path / "conf" / "mail.yaml"
    out.parent.mkdir()
    result = run("--root", str(root), "export", "--domain", "mydomain.org", "--output", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert "  mydomain.org:\n    base_user: vbase1\n" in out.read_text()
    assert [p.name for p in out.parent.iterdir()] == ["mail.yaml"]  # no temporary file left
    assert check_config(out).errors == []


def test_the_output_file_is_owner_only_even_over_a_readable_one(tmp_path):
    root = tmp_path / "root"
    build_step_root("02-vadduser", root)
    out = tmp_path / "mail.yaml"
    assert run("--root", str(root), "export", "-o", str(out)).exit_code == 0
    assert "password: $1$" in out.read_text()  # what the mode protects: the stored hashes
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    out.chmod(0o644)
    assert run("--root", str(root), "export", "-o", str(out)).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_unknown_domain_is_one_line_and_exit_1(tmp_path):
    root = tmp_path / "root"
    build_step_root("01-vsetup", root)
    result = run("--root", str(root), "export", "--domain", "other.example")
    assert result.exit_code == 1
    assert result.stderr == "vmreconcile: no live domain 'other.example' (known: mydomain.org)\n"


def test_a_corrupt_table_is_one_line_not_a_traceback(tmp_path):
    root = tmp_path / "root"
    home = build_step_root("02-vadduser", root)
    data = bytearray((home / "passwd.cdb").read_bytes())
    (home / "passwd.cdb").write_bytes(bytes(data[:3000]))
    result = run("--root", str(root), "export")
    assert result.exit_code == 1
    assert result.stderr.startswith("vmreconcile: ") and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.output


def test_a_missing_base_user_is_one_line(tmp_path):
    root = tmp_path / "root"
    build_step_root("01-vsetup", root)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    result = run("--root", str(root), "export")
    assert result.exit_code == 1 and "base user 'vbase1' does not exist" in result.stderr


def test_an_unwritable_output_is_one_line(tmp_path):
    root = tmp_path / "root"
    build_step_root("01-vsetup", root)
    result = run("--root", str(root), "export", "--output", str(tmp_path / "missing-dir" / "x.yaml"))
    assert result.exit_code == 1 and result.stderr.startswith("vmreconcile: ")
    assert not Path(tmp_path / "missing-dir").exists()
