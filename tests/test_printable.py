"""Nothing raw reaches the terminal: every diagnostic and one-line error escapes control characters."""

from __future__ import annotations

import pytest

from tests.clirunner import cli_runner
from vmreconcile.cli.main import app
from vmreconcile.desired.errors import Diagnostic
from vmreconcile.desired.spec import Position
from vmreconcile.printable import printable


@pytest.mark.parametrize(
    "text, shown",
    [
        ("plain text, é and ü", "plain text, é and ü"),
        ("a\x1b[31mred", "a\\x1b[31mred"),
        ("line\nforged: error", "line\\nforged: error"),
        ("cr\rhides", "cr\\rhides"),
        ("tab\t", "tab\\t"),
        ("nul\0", "nul\\x00"),
        ("del\x7f c1\x85\x9b", "del\\x7f c1\\x85\\x9b"),
        ("bidi\u202eevil", "bidi\\u202eevil"),
        ("not utf-8 \udcff", "not utf-8 \\xff"),
    ],
)
def test_printable_escapes_every_character_a_terminal_would_act_on(text, shown):
    assert printable(text) == shown
    assert printable(shown) == shown  # already safe text is left alone


def test_a_diagnostic_escapes_its_file_name_path_and_message():
    diagnostic = Diagnostic(Position("evil\x1b]0;x\a.yaml", 1, 2), ("domains", "a\nb"), "bad \x1b[2J value")
    assert str(diagnostic) == 'evil\\x1b]0;x\\x07.yaml:1:2: domains["a\\nb"]: bad \\x1b[2J value'


def test_validate_prints_a_hostile_file_name_escaped(tmp_path):
    name = "mail\x1b[31m.yaml"
    (tmp_path / name).write_text("domains: 5\n")
    result = cli_runner().invoke(app, ["validate", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 1
    assert "\x1b" not in result.output
    assert result.stdout == f"{tmp_path}/mail\\x1b[31m.yaml:1:10: domains: expected a mapping, found the number 5\n"
    assert result.stderr == f"vmreconcile: {tmp_path}: 1 error\n"


def test_plan_errors_are_escaped_too(tmp_path):
    missing = tmp_path / "gone\x1b[2J.yaml"
    result = cli_runner().invoke(app, ["--root", str(tmp_path), "plan", str(missing)], catch_exceptions=False)
    assert result.exit_code == 1
    assert "\x1b" not in result.output
    assert result.stderr.splitlines() == [
        f"{tmp_path}/gone\\x1b[2J.yaml: no such file or directory",
        f"vmreconcile: {tmp_path}/gone\\x1b[2J.yaml: 1 error(s) in the configuration",
    ]
