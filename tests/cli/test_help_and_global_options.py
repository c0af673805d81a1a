"""Options where people type them: `--help` of every command, global options after the command."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
import typer

from tests.checkout_cli import CLI, CLI_DIR
from tests.clirunner import cli_runner
from tests.conftest import REPO
from tests.plan.reconcile_helpers import empty_root
from vmreconcile.cli.main import app

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
#: How typer shows a Python type instead of a metavariable: <path>, <list[str]>, <text|json>.
PYTHON_TYPE = re.compile(r"<(path|str|int|float|bool|file|datetime|uuid|(list|tuple)\[[^\]]*\])>|<[a-z_]+(\|[a-z_]+)+>")
CONFIG = "domains:\n  mydomain.org:\n    base_user: myuser\n    users:\n      me: {password: null}\n"


def help_of(*command: str) -> str:
    result = cli_runner().invoke(app, [*command, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.stdout


def usage_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("Usage:"))


def test_every_command_is_tested_here():
    assert {"apply", "demo", "export", "history", "install-runtime", "plan", "rollback", "show", "validate"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_shows_metavariables_not_python_types(command):
    text = help_of(*([command] if command else []))
    assert not PYTHON_TYPE.search(text), PYTHON_TYPE.search(text)
    assert "[[" not in text and "]]" not in text
    assert "--root DIR" in text  # a global option, also after every command


@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_config_is_spelled_one_way_in_every_usage_line(command):
    text = help_of(command)
    assert usage_line(text) == f"Usage: vmreconcile {command} [OPTIONS] [CONFIG]"
    assert re.search(r"^  \[?CONFIG\]?  A YAML file, or a directory", text, re.M)


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("plan", ["--domain DOMAIN", "--out FILE", "--state FILE", "-f, --format FORMAT", "--max-chars N"]),
        ("apply", ["--domain DOMAIN", "--plan FILE", "--lock-timeout SECONDS", "--compact", "--detail"]),
        ("show", ["--domain DOMAIN", "-f, --format FORMAT"]),
        ("export", ["--domain DOMAIN", "-o, --output FILE"]),
        ("install-runtime", ["--bindir DIR", "--libdir DIR", "--python FILE"]),
        ("demo", ["--config FILE"]),
        ("history", ["-f, --format FORMAT"]),
        ("rollback", ["--lock-timeout SECONDS"]),
    ],
)
def test_options_name_what_they_take(command, shown):
    text = help_of(command)
    for option in shown:
        assert option in text
    if command == "demo":
        assert usage_line(text) == "Usage: vmreconcile demo [OPTIONS] [DIR]"


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "root"
    empty_root(root)
    config = tmp_path / "mail.yaml"
    config.write_text(CONFIG)
    return root, config


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real entry point (what the console script runs), not typer's test runner."""
    return subprocess.run(
        [sys.executable, "-c", "from vmreconcile.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        cwd=REPO,
    )


def test_root_after_the_command(site, tmp_path):
    root, config = site
    planned = cli("plan", "--root", str(root), str(config), "--detailed-exitcode")
    assert planned.returncode == 2, planned.stderr
    assert "+ user mydomain.org/me" in planned.stdout
    applied = cli("apply", str(config), "--root", str(root), "--yes")
    assert applied.returncode == 0, applied.stderr
    assert (root / "home/myuser/passwd.cdb").exists()
    shown = cli("show", f"--root={root}")
    assert shown.returncode == 0 and "# mydomain.org (base user myuser, 4 entries)" in shown.stdout
    assert cli("plan", str(config), "--root", str(root), "--detailed-exitcode").returncode == 0


def test_root_after_the_command_wins_over_one_before_it_and_over_the_environment(site, tmp_path):
    root, config = site
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert cli("apply", str(config), "--root", str(root), "--yes").returncode == 0
    done = cli("--root", str(elsewhere), "plan", "--root", str(root), str(config), "--detailed-exitcode")
    assert done.returncode == 0, done.stderr
    env = {"VMRECONCILE_ROOT": str(elsewhere)}
    assert cli("plan", "--root", str(root), str(config), "--detailed-exitcode", env=env).returncode == 0
    # and the environment alone still works, before or after nothing
    missing = cli("plan", str(config), env=env)
    assert missing.returncode == 1 and "myuser" in missing.stderr


def test_version_after_the_command():
    done = cli("plan", "--version")
    assert done.returncode == 0 and done.stdout.startswith("vmreconcile ")


def test_compact_and_detail_are_one_or_the_other(site):
    root, config = site
    done = cli("plan", str(config), "--root", str(root), "--compact", "--detail")
    assert done.returncode == 2 and "--compact and --detail cannot be combined" in done.stderr


def test_markdown_keeps_to_max_chars(site):
    root, config = site
    done = cli("plan", str(config), "--root", str(root), "--format", "markdown", "--max-chars", "1000")
    assert done.returncode == 0 and len(done.stdout) <= 1000
    assert "more changes are not shown" in done.stdout


def test_the_commands_the_demo_prints_work_as_printed(tmp_path):
    """What bin/demo runs (.venv/bin/vmreconcile demo, as a relative path), then each command of
    its closing hints, through a shell that does not have the command's directory on PATH."""
    command = os.path.relpath(CLI, REPO) if CLI.is_relative_to(REPO) else str(CLI)
    root = tmp_path / "demo"
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != str(CLI_DIR))
    env = {**os.environ, "PATH": path, "NO_COLOR": "1"}
    demo = subprocess.run([command, "demo", str(root)], capture_output=True, text=True, cwd=REPO, env=env)
    assert demo.returncode == 0, demo.stderr
    hints = demo.stdout.split("Look around, with the vmreconcile that just ran:\n")[1].splitlines()
    commands = [line.strip() for line in hints if line.strip()]
    assert commands[0] == shlex.join([command, "--root", str(root), "show"])
    outputs = []
    for command in commands:
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, cwd=REPO, env=env)
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(done.stdout)
    assert "# mydomain.org, .mydomain.org (base user myuser, 7 entries)" in outputs[0]
    assert outputs[1] == "No changes. The host matches the configuration.\n"
    assert f"{root}/home/myuser/passwd.cdb" in outputs[2]
