"""`vmreconcile plan` / `apply` through the CLI, with real YAML: formats, exit codes, saved plans, brake."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.clirunner import cli_runner
from tests.conftest import TREE_GID, TREE_UID, own_home
from tests.plan.reconcile_helpers import HOWTO, empty_root, mtimes
from vmreconcile.apply.lock import global_lock
from vmreconcile.cli.main import app
from vmreconcile.host import Host


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "root"
    empty_root(root)
    config = tmp_path / "mail.yaml"
    config.write_text(HOWTO)
    return root, config


def run(root: Path, *args: str, env: dict | None = None):
    runner = cli_runner()
    return runner.invoke(
        app, ["--root", str(root), *args], env={"ME_PW": "secret", **(env or {})}, catch_exceptions=False
    )


def test_plan_text_then_apply_then_plan_shows_no_changes(site):
    root, config = site
    first = run(root, "plan", str(config), "--detailed-exitcode")
    assert first.exit_code == 2
    assert "\n+ user mydomain.org/me: password <yescrypt sha256:" in first.stdout
    assert first.stdout.rstrip().endswith("Plan: 16 to add, 0 to change, 0 to destroy.")
    assert "$y$" not in first.stdout
    applied = run(root, "apply", str(config), "--yes")
    assert applied.exit_code == 0, applied.output
    assert "Apply complete: 16 added, 0 changed, 0 destroyed." in applied.stdout
    before = mtimes(root)
    again = run(root, "plan", str(config), "--detailed-exitcode")
    assert again.exit_code == 0 and again.stdout.startswith("No changes.")
    second = run(root, "apply", str(config), "--yes")
    assert second.exit_code == 0 and "No changes." in second.stdout
    assert mtimes(root) == before


def test_plan_json_and_markdown(site):
    root, config = site
    doc = json.loads(run(root, "plan", str(config), "--format", "json").stdout)
    assert doc["format_version"] == 1
    assert doc["summary"] == {
        "add": 16,
        "change": 0,
        "destroy": 0,
        "by_domain": [
            {"domain": "mydomain.org", "add": 12, "change": 0, "destroy": 0},
            {"domain": None, "add": 4, "change": 0, "destroy": 0},
        ],
    }
    assert {c["type"] for c in doc["changes"]} == {"domain", "maildir", "user", "alias", "control_line"}
    assert {c["part"] for c in doc["changes"]} == {"runtime-config", "tables", "control"}
    markdown = run(root, "plan", str(config), "--format", "markdown").stdout
    assert markdown.startswith("### vmreconcile plan: 16 to add, 0 to change, 0 to destroy")


def test_apply_without_a_terminal_and_without_yes_refuses_and_writes_nothing(site):
    root, config = site
    before = mtimes(root)
    result = run(root, "apply", str(config))
    assert result.exit_code == 1
    assert "stdin is not a terminal" in result.stderr and "--yes" in result.stderr
    after = {
        path: t for path, t in mtimes(root).items() if not path.startswith(str(root / "run"))
    }  # the lock file itself
    assert after == before


def test_saved_plan_is_private_applies_once_and_is_refused_when_the_host_moved(site, tmp_path):
    root, config = site
    saved = tmp_path / "plan.json"
    assert run(root, "plan", str(config), "--out", str(saved)).exit_code == 0
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert "$y$" in saved.read_text()  # the fresh hash apply will write: hence 0600
    assert run(root, "apply", "--plan", str(saved), "--yes").exit_code == 0
    stale = run(root, "apply", "--plan", str(saved), "--yes")
    assert stale.exit_code == 1 and "live state changed since this plan was made" in stale.stderr


def test_plan_against_a_redacted_state_snapshot(site, tmp_path):
    root, config = site
    assert run(root, "apply", str(config), "--yes").exit_code == 0
    snapshot = tmp_path / "state.json"
    shown = run(root, "show", "--format", "json", "--redact")
    assert shown.exit_code == 0
    snapshot.write_text(shown.stdout)
    offline = run(tmp_path / "elsewhere", "plan", str(config), "--state", str(snapshot), "--detailed-exitcode")
    assert offline.exit_code == 0, offline.output
    assert "not verifiable offline" in offline.stdout


def test_missing_secret_names_the_user_and_the_variable_and_exits_1(site):
    root, config = site
    result = cli_runner().invoke(app, ["--root", str(root), "plan", str(config)], env={"ME_PW": None})
    assert result.exit_code == 1
    assert result.stderr == "vmreconcile: mydomain.org/me: password secret {env: ME_PW}: not set\n"


def test_invalid_config_lists_problems_and_exits_1(site, tmp_path):
    root, _ = site
    bad = tmp_path / "bad.yaml"
    bad.write_text("domains:\n  mydomain.org:\n    base_user: myuser\n    users:\n      me:\n        password: plain\n")
    result = run(root, "plan", str(bad))
    assert result.exit_code == 1 and "bad.yaml:6:" in result.stderr


def test_brake_refuses_mass_deletion_unless_forced(site, tmp_path):
    root, _ = site
    many = tmp_path / "many.yaml"
    users = "".join(f"      u{i}: {{password: null}}\n" for i in range(12))
    many.write_text("domains:\n  mydomain.org:\n    base_user: myuser\n    users:\n" + users)
    assert run(root, "apply", str(many), "--yes").exit_code == 0
    few = tmp_path / "few.yaml"
    few.write_text(
        "domains:\n  mydomain.org:\n    base_user: myuser\n    prune: true\n    users:\n"
        + "".join(f"      u{i}: {{password: null}}\n" for i in range(6))
    )
    refused = run(root, "apply", str(few), "--yes")
    assert refused.exit_code == 1 and "safety brake" in refused.stderr
    assert "Safety brake: mydomain.org: 6 of 15" in refused.stdout
    forced = run(root, "apply", str(few), "--yes", "--force")
    assert forced.exit_code == 0 and "6 destroyed" in forced.stdout


def test_second_apply_waits_for_the_lock_and_gives_up(site):
    root, config = site
    with global_lock(Host(root).lock_path, 1):
        result = run(root, "apply", str(config), "--yes", "--lock-timeout", "0.2")
    assert result.exit_code == 1
    assert "another vmreconcile apply is running" in result.stderr and "giving up" in result.stderr


def test_reload_command_is_printed_not_run_under_root(site, tmp_path):
    root, _ = site
    marker = tmp_path / "reloaded"
    config = tmp_path / "reload.yaml"
    config.write_text(f"qmail:\n  reload: touch {marker}\n" + HOWTO)
    result = run(root, "apply", str(config), "--yes")
    assert result.exit_code == 0
    assert f"would run `touch {marker}`" in result.stdout and not marker.exists()


def test_default_config_path_is_used_when_none_is_given(site, monkeypatch):
    root, config = site
    monkeypatch.chdir(config.parent)
    os.rename(config, config.parent / "vmreconcile.yaml")
    assert run(root, "plan", "--detailed-exitcode").exit_code == 2


def test_domain_targeting_plans_and_applies_only_that_domain(tmp_path):
    root = tmp_path / "root"
    empty_root(root)
    (root / "etc/passwd").write_text(
        f"myuser:x:{TREE_UID}:{TREE_GID}::/home/myuser:/bin/sh\n"
        f"other:x:{TREE_UID + 1}:{TREE_GID}::/home/other:/bin/sh\n"
    )
    (root / "home/other").mkdir()
    own_home(root / "home/other", TREE_UID + 1, TREE_GID)
    config = tmp_path / "two.yaml"
    config.write_text(HOWTO + "  other.org:\n    base_user: other\n    users:\n      bob: {password: null}\n")
    only = run(root, "plan", str(config), "--domain", "other.org", "--format", "json")
    addresses = [c["address"] for c in json.loads(only.stdout)["changes"]]
    assert addresses and all("other.org" in a for a in addresses)
    saved = tmp_path / "other.plan"
    assert run(root, "plan", str(config), "--domain", "other.org", "--out", str(saved)).exit_code == 0
    assert run(root, "apply", "--plan", str(saved), "--yes").exit_code == 0
    assert (root / "home/other/passwd.cdb").exists() and not (root / "home/myuser/passwd.cdb").exists()
    assert "mydomain.org" not in (root / "var/qmail/control/virtualdomains").read_text()
    full = json.loads(run(root, "plan", str(config), "--format", "json").stdout)
    assert {c["address"].split("/")[0] for c in full["changes"]} >= {"mydomain.org"}
    assert not any("other.org" in c["address"] for c in full["changes"])
    unknown = run(root, "plan", str(config), "--domain", "nope.org")
    assert unknown.exit_code == 1 and "nope.org" in unknown.stderr


def test_offline_plan_needs_no_secrets_and_cannot_be_applied(site, tmp_path):
    root, config = site
    assert run(root, "apply", str(config), "--yes").exit_code == 0
    snapshot = tmp_path / "state.json"
    snapshot.write_text(run(root, "show", "--format", "json", "--redact").stdout)
    config.write_text(HOWTO + "      bob:\n        password: {env: BOB_PW}\n")
    saved = tmp_path / "offline.plan"
    offline = cli_runner().invoke(
        app, ["plan", str(config), "--state", str(snapshot), "--out", str(saved)], env={"ME_PW": None, "BOB_PW": None}
    )
    assert offline.exit_code == 0, offline.output
    assert "mydomain.org/me: password from a env secret is not verifiable offline" in offline.stdout
    assert "mydomain.org/bob: password from a env secret that is not available offline" in offline.stdout
    refused = run(root, "apply", "--plan", str(saved), "--yes")
    assert refused.exit_code == 1 and "for review only" in refused.stderr


def test_a_saved_plan_that_purges_mailboxes_needs_the_flag_again(site, tmp_path):
    root, config = site
    config.write_text(HOWTO + "      bob: {password: null}\n")
    assert run(root, "apply", str(config), "--yes").exit_code == 0
    config.write_text(HOWTO.replace("    wildcard: true", "    wildcard: true\n    prune: true"))
    saved = tmp_path / "purge.plan"
    made = run(root, "plan", str(config), "--purge-mailboxes", "--out", str(saved))
    assert made.exit_code == 0, made.output
    refused = run(root, "apply", "--plan", str(saved), "--yes")
    assert refused.exit_code == 1 and "give --purge-mailboxes to apply it too" in refused.stderr
    mailbox = root / "home" / "myuser" / "users" / "bob"
    assert (mailbox / "new").is_dir()
    assert run(root, "apply", "--plan", str(saved), "--yes", "--purge-mailboxes").exit_code == 0
    assert not mailbox.exists()
