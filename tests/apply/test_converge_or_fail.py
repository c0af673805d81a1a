"""Converge or fail: apply exits 0 only when the next plan is empty; what it could not do is an
error; lines of control files that vmreconcile does not own stay (issue 11)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tests.clirunner import cli_runner
from tests.plan.reconcile_helpers import empty_root, howto_spec
from vmreconcile.apply import execute as execute_module
from vmreconcile.apply.execute import execute
from vmreconcile.cli.main import app
from vmreconcile.desired.spec import PasswordSpec, UserSpec
from vmreconcile.host import Host
from vmreconcile.live import read_live_state
from vmreconcile.plan.build import build_plan
from vmreconcile.workflow import plan_on_host, read_live_for, remaining_changes

NOW = 1_795_546_316
CONFIG = """\
domains:
  mydomain.org:
    base_user: myuser
    wildcard: true
    users:
      me: {password: null}
"""


def run(root: Path, *args: str):
    return cli_runner().invoke(app, ["--root", str(root), *args], catch_exceptions=False)


def test_an_entry_whose_mailbox_cannot_be_made_is_an_error_not_a_note(tmp_path):
    """A plan made without the preflight (as an old saved plan could be) that asks for a mailbox
    outside the home: apply reports an error and the unit is not counted as written."""
    home = empty_root(tmp_path)
    host = Host(tmp_path)
    spec = howto_spec()
    escape = UserSpec("bob", password=PasswordSpec("none"), directory="../escape", has_mailbox=True)
    spec = replace(spec, domains=(replace(spec.domains[0], users=spec.domains[0].users + (escape,)),))
    plan = build_plan(spec, read_live_for(host, [("mydomain.org", "myuser")]), now=NOW, secrets=lambda k, r: None)
    result = execute(plan, host)
    assert result.errors == [
        "mydomain.org/bob/maildir: mydomain.org: mailbox ../escape cannot be created: "
        "'../escape': not a path inside the base user's home"
    ]
    assert not (home.parent / "escape").exists()


def test_the_same_entry_is_refused_by_plan_before_anything_is_written(tmp_path):
    empty_root(tmp_path)
    config = tmp_path / "mail.yaml"
    config.write_text(CONFIG + "      bob: {password: null, directory: ../escape, has_mailbox: true}\n")
    result = run(tmp_path, "apply", str(config), "--yes")
    assert result.exit_code == 1
    assert (
        "mail.yaml:7:7: domain mydomain.org: mydomain.org/bob/maildir: directory '../escape' has a '..' "
        "component: it would leave the base user's home"
    ) in result.stderr
    assert "refusing to apply while a domain has errors; nothing was written" in result.stderr
    assert not (tmp_path / "home/myuser/passwd.cdb").exists()


def test_apply_that_does_not_converge_exits_1_and_says_what_is_left(tmp_path, monkeypatch):
    """If a unit reports success but the host does not match afterwards (here: the control file
    write is made to do nothing), apply reads the host back and fails instead of exiting 0."""
    empty_root(tmp_path)
    config = tmp_path / "mail.yaml"
    config.write_text(CONFIG)
    monkeypatch.setattr(execute_module.Executor, "write_control", lambda self, name, changes=(): None)
    result = run(tmp_path, "apply", str(config), "--yes")
    assert result.exit_code == 1
    assert (
        "vmreconcile: error: the host does not match the plan after apply: 4 change(s) still pending "
        "(control/virtualdomains/mydomain.org, control/virtualdomains/.mydomain.org, "
        "control/rcpthosts/mydomain.org, control/rcpthosts/.mydomain.org)"
    ) in result.stderr
    assert "Apply complete" not in result.stdout


def test_remaining_changes_is_empty_after_a_real_apply(tmp_path):
    empty_root(tmp_path)
    host = Host(tmp_path)
    plan, _ = plan_on_host(host, howto_spec(), now=NOW)
    assert plan.changes and execute(plan, host).errors == []
    assert remaining_changes(host, plan) == []


def test_comment_and_blank_lines_in_control_files_are_kept(tmp_path):
    root = tmp_path
    empty_root(root)
    control = root / "var/qmail/control"
    (control / "virtualdomains").write_text(
        "# hosted here: see the wiki\n\nold.example:olduser\n   # indented: note\n# end\n"
    )
    (control / "rcpthosts").write_text("# accepted hosts\nlocalhost\n\nold.example\n")
    config = root / "mail.yaml"
    config.write_text(CONFIG)
    (root / "etc/passwd").write_text((root / "etc/passwd").read_text())  # olduser is not a base user here
    result = run(root, "apply", str(config), "--yes")
    assert result.exit_code == 0, result.output
    assert (control / "virtualdomains").read_text() == (
        "# hosted here: see the wiki\n\nold.example:olduser\n   # indented: note\n# end\n"
        "mydomain.org:myuser\n.mydomain.org:myuser\n"
    )
    assert (
        control / "rcpthosts"
    ).read_text() == "# accepted hosts\nlocalhost\n\nold.example\nmydomain.org\n.mydomain.org\n"
    assert run(root, "plan", str(config), "--detailed-exitcode").exit_code == 0
    assert [d.name for d in read_live_state(Host(root), on_error=lambda e: None).domains] == ["mydomain.org"]
