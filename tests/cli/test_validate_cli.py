"""`vmreconcile validate`: every error at once as file:line:col lines, exit codes, touches nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.clirunner import cli_runner
from tests.conftest import build_step_root
from tests.desired.test_corpus import DATA, INVALID, VALID, expectations
from tests.fleet.treedigest import tree_digest
from vmreconcile.cli.main import app

REPO = Path(__file__).resolve().parents[2]


def run(*args: str):
    return cli_runner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("name", INVALID)
def test_each_bad_input_prints_its_errors_and_exits_1_without_a_traceback(name, monkeypatch):
    monkeypatch.chdir(DATA / "invalid")
    result = run("validate", name)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    expected = expectations(Path(name), "expect")
    assert result.stdout.splitlines() == expected + expectations(Path(name), "warn")
    count = len(expected)
    assert result.stderr == f"vmreconcile: {name}: {count} error{'' if count == 1 else 's'}\n"


@pytest.fixture(scope="module")
def quiet_root(tmp_path_factory):
    """A --root tree with a live domain, and the digest of every file, mode and owner in it."""
    root = tmp_path_factory.mktemp("root")
    build_step_root("03-vaddalias", root)
    return root, tree_digest(root)


@pytest.mark.parametrize("name", INVALID)
@pytest.mark.parametrize("command", [("plan",), ("apply", "--yes")])
def test_plan_and_apply_of_each_bad_input_exit_1_and_write_nothing(name, command, quiet_root, monkeypatch):
    root, before = quiet_root
    monkeypatch.chdir(DATA / "invalid")
    result = cli_runner().invoke(app, ["--root", str(root), command[0], name, *command[1:]], catch_exceptions=False)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    expected = expectations(Path(name), "expect")
    assert lines[: len(expected)] == expected
    assert lines[-1] == f"vmreconcile: {name}: {len(expected)} error(s) in the configuration"
    assert tree_digest(root) == before


@pytest.mark.parametrize("name", VALID)
def test_each_good_input_prints_warnings_and_one_summary_line(name, monkeypatch):
    monkeypatch.chdir(DATA / "valid")
    result = run("validate", name)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:-1] == expectations(Path(name), "warn")
    assert lines[-1].startswith(f"{name}: valid: ")


def test_summary_counts_domains_users_and_aliases():
    result = run("validate", str(REPO / "examples" / "howto.yaml"))
    assert result.stdout == f"{REPO / 'examples' / 'howto.yaml'}: valid: 1 domain, 1 user, 2 aliases\n"


def test_both_examples_validate_without_any_environment(monkeypatch):
    for name in list(os.environ):
        if name.endswith(("_PASSWORD", "_ALICE")):
            monkeypatch.delenv(name)
    assert run("validate", str(REPO / "examples" / "howto.yaml")).exit_code == 0
    result = run("validate", str(REPO / "examples" / "multi-domain"))
    assert result.exit_code == 0 and result.stdout.endswith("valid: 2 domains, 6 users, 6 aliases\n")


def test_default_config_is_vmreconcile_yaml_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = run("validate")
    assert missing.exit_code == 1
    assert missing.stdout == "vmreconcile.yaml: no such file or directory\n"
    (tmp_path / "vmreconcile.yaml").write_text("domains:\n  a.example:\n    base_user: va\n")
    assert run("validate").stdout == "vmreconcile.yaml: valid: 1 domain, 0 users, 0 aliases\n"


def test_validate_touches_nothing_and_reads_no_secret(tmp_path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_text("plaintext\n")
    secret.chmod(0)
    config = tmp_path / "c.yaml"
    config.write_text(
        "domains:\n  a.example:\n    base_user: va\n    users:\n"
        f"      u: {{password: {{file: {secret}}}}}\n      v: {{password: {{env: UNSET_FOR_SURE}}}}\n"
    )
    monkeypatch.delenv("UNSET_FOR_SURE", raising=False)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    result = run("--root", str(tmp_path / "nonexistent-root"), "validate", str(config))
    assert result.exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    assert not (tmp_path / "nonexistent-root").exists()
