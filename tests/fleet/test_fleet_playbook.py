"""examples/ansible/site.yml, run by real ansible-playbook: a config repo in git pushed to a host.

The host is localhost with a throwaway ``--root`` shaped like a fixture step; the config
repository starts as that step's ``export``. Each commit touches one part, and the handler
commands (normally ``svc -h`` and ``systemctl restart``) append their name to a log, so the test
sees exactly which handlers fired on which run. Every variable comes from the inventory file's
``[mail:vars]``, as examples/ansible/inventory.ini documents (not from ``-e``, which would
override anything), and each test runs with the test venv's ansible-core and Debian 12's 2.14.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import build_step_root
from tests.fleet.fleetkit import (
    ANSIBLE_LABELS,
    REPO,
    UNSUPPORTED_WARNING,
    VMRECONCILE,
    ansible_installation,
    load_export,
    run_playbook,
    tree_digest,
    vmreconcile,
)

SITE = REPO / "examples" / "ansible" / "site.yml"
STEP = "11-after-deliveries"
QMAIL, DOVECOT, AUTHDAEMOND = "Reload qmail-send", "Restart dovecot", "Restart authdaemond"
MODULE_TASK_PREFIX = "Make the mail domains match revision "


class ConfigRepo:
    """A git repository holding config/mail.yaml, edited through the exported data."""

    def __init__(self, path: Path, doc: dict) -> None:
        self.path = path
        self.doc = doc
        (path / "config").mkdir(parents=True)
        self.git("init", "-q")
        self.commit("adopt the live host (vmreconcile export)")

    @property
    def domain(self) -> dict:
        return self.doc["domains"]["mydomain.org"]

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.path), "-c", "user.name=Test", "-c", "user.email=t@example.test", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def write(self) -> None:
        (self.path / "config" / "mail.yaml").write_text(yaml.safe_dump(self.doc, sort_keys=False))

    def commit(self, message: str) -> str:
        self.write()
        self.git("add", "config")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "--short=12", "HEAD")


@pytest.fixture(scope="module", params=ANSIBLE_LABELS)
def fleet(request, tmp_path_factory):
    ansible = ansible_installation(request.param)
    work = tmp_path_factory.mktemp(f"site-{ansible.label}")
    root = work / "root"
    build_step_root(STEP, root)
    repo = ConfigRepo(work / "config-repo", load_export(vmreconcile("export", root=root).stdout))
    handler_log = work / "handlers.log"
    inventory_vars = {
        "vmreconcile_become": "false",
        "vmreconcile_config_src": str(repo.path / "config"),
        "vmreconcile_stage_dir": str(work / "stage"),
        "vmreconcile_executable": str(VMRECONCILE),
        "vmreconcile_root": str(root),
        "vmreconcile_snapshot_dir": str(work / "snapshots"),
        **{
            f"vmreconcile_{key}": f"\"sh -c 'echo {name} >> {handler_log}'\""
            for key, name in (
                ("reload_qmail", QMAIL),
                ("restart_dovecot", DOVECOT),
                ("restart_authdaemond", AUTHDAEMOND),
            )
        },
    }
    (work / "inventory.ini").write_text(
        "[mail]\nlocalhost ansible_connection=local\n\n[mail:vars]\n"
        + "".join(f"{name}={value}\n" for name, value in inventory_vars.items())
    )

    def play(*args: str):
        before = handler_log.read_text().splitlines() if handler_log.exists() else []
        run = run_playbook(SITE, work, *args, inventory=str(work / "inventory.ini"), ansible=ansible)
        after = handler_log.read_text().splitlines() if handler_log.exists() else []
        assert UNSUPPORTED_WARNING not in run.stdout + run.stderr
        return run, after[len(before) :]

    return dict(work=work, root=root, repo=repo, play=play, ansible=ansible)


def module_record(run):
    [record] = [r for r in run.records if r.task.startswith(MODULE_TASK_PREFIX)]
    return record


def test_pushes_git_commits_and_fires_only_the_handlers_of_the_changed_parts(fleet):
    play, repo, root, work = fleet["play"], fleet["repo"], fleet["root"], fleet["work"]

    # A commit touching all three parts: an option, a user, a domain alias.
    repo.domain["options"] = {"autoresponse-file": "away.txt"}
    repo.domain["users"]["me"]["forwards"] = ["me-copy@new.example"]
    repo.domain["domain_aliases"] = ["mydomain.net"]
    rev = repo.commit("three parts")

    before = tree_digest(root)
    run, fired = play("--check", "--diff")
    assert run.returncode == 0, run.stdout[-4000:]
    assert tree_digest(root) == before
    planned = module_record(run)
    assert planned.changed and planned.result["parts"] == ["control", "runtime-config", "tables"]
    assert "--- before: update user mydomain.org/me (part tables)" in run.stdout
    assert fired == []  # in check mode the handlers' commands are not run
    # nothing is left on the host: no revision directory, and the checked copy is gone again
    assert not (work / "stage").exists()
    checked = run.named("Make a temporary directory on the host for the checked revision").result["path"]
    assert checked.endswith(".vmreconcile-check") and not Path(checked).exists()
    assert run.named("Remove the checked revision from the host").status == "ok"

    run, fired = play()
    assert run.returncode == 0, run.stdout[-4000:]
    assert module_record(run).changed
    assert module_record(run).task == MODULE_TASK_PREFIX + rev
    assert (work / "stage" / rev / "mail.yaml").exists()  # a real run keeps the revision it applied
    assert sorted(fired) == sorted([QMAIL, DOVECOT, AUTHDAEMOND])
    assert sorted(run.handlers_run()) == sorted([QMAIL, DOVECOT, AUTHDAEMOND])
    assert (root / "home/vbase1/.vmailmgr/autoresponse-file").read_text() == "away.txt\n"

    run, fired = play()
    assert run.returncode == 0, run.stdout[-4000:]
    assert not module_record(run).changed
    assert fired == [] and run.handlers_run() == []
    assert [r.task for r in run.records if r.changed] == []

    # users (tables) and a domain alias (control): only qmail-send is reloaded
    repo.domain["users"]["newbie"] = {"password": None}
    repo.domain["domain_aliases"] = ["mydomain.net", "mydomain.info"]
    repo.commit("tables and control")
    run, fired = play()
    assert module_record(run).result["parts"] == ["control", "tables"]
    assert fired == [QMAIL] and run.handlers_run() == [QMAIL]

    repo.domain["options"] = {"autoresponse-file": "vacation.txt"}
    repo.commit("runtime-config only")
    run, fired = play()
    assert module_record(run).result["parts"] == ["runtime-config"]
    assert sorted(fired) == sorted([DOVECOT, AUTHDAEMOND])

    # every run published the host's redacted state for CI; the committed config matches it
    snapshot = work / "snapshots" / "localhost.json"
    assert json.loads(snapshot.read_text())["redacted"] is True
    assert "$1$" not in snapshot.read_text()
    offline = vmreconcile(
        "plan", str(repo.path / "config"), "--state", str(snapshot), "--detailed-exitcode", check=False
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr


def test_refuses_uncommitted_configuration(fleet):
    play, repo, root = fleet["play"], fleet["repo"], fleet["root"]
    repo.domain["users"]["uncommitted"] = None
    repo.write()
    before = tree_digest(root)
    run, fired = play()
    assert run.returncode != 0
    refused = run.named("Refuse uncommitted configuration (what runs on the hosts must be a commit)")
    assert refused.status == "failed" and "mail.yaml" in refused.result["stdout"]
    assert not [r for r in run.records if r.task.startswith(MODULE_TASK_PREFIX)]
    assert fired == [] and tree_digest(root) == before
