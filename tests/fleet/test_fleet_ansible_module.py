"""The vmreconcile.mail.vmreconcile Ansible module, run by real ansible-playbook on a throwaway root.

One playbook run (tests/fleet/playbooks/module.yml) exercises check mode, diff mode, apply,
idempotence, inline content with an env secret and the failure messages; the assertions below
read what Ansible recorded and compare it with the CLI's own plan and with file digests.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import build_step_root, load_script
from tests.fleet.fleetkit import (
    ANSIBLE_LABELS,
    COLLECTION_SOURCE,
    MANAGED_PYTHON,
    TREEDIGEST,
    UNSUPPORTED_WARNING,
    VMRECONCILE,
    Ansible,
    PlaybookRun,
    ansible_installation,
    build_once,
    install_collection,
    load_export,
    run_playbook,
    tree_digest,
    vmreconcile,
)

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "module.yml"
STEP = "11-after-deliveries"
ZOE_HASH = "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"
ZOE_PASSWORD = "zoe-secret-Pa55"
BAD_YAML = """domains:
  mydomain.org:
    base_user: vbase1
    users:
      me:
        quota: 3
"""


def edited_export(root: Path) -> str:
    """The step's export with three edits: one per part the plan can show (update, create, control)."""
    doc = load_export(vmreconcile("export", root=root).stdout)
    domain = doc["domains"]["mydomain.org"]
    domain["users"]["me"]["forwards"] = ["me-copy@new.example"]
    domain["users"]["zoe"] = {"password": ZOE_HASH}
    domain["domain_aliases"] = ["mydomain.net"]
    return yaml.safe_dump(doc, sort_keys=False)


#: Deleted by the brake test: 6 of the step's 17 entries (after the edits), more than 30%.
PRUNED = ("alice", "bob", "dave", "erin", "nopass", "Henry.Ford")


def pruned_config(config: str) -> str:
    """The edited configuration with prune on and six users gone: trips the safety brake."""
    doc = load_export(config)
    domain = doc["domains"]["mydomain.org"]
    domain["prune"] = True
    for name in PRUNED:
        del domain["users"][name]
    return yaml.safe_dump(doc, sort_keys=False)


def run_module_playbook(work: Path, ansible: Ansible) -> dict:
    """Set up a step root and configurations, run the module playbook once; JSON-ready results."""
    root = work / "root"
    build_step_root(STEP, root)
    config = work / "config.yaml"
    config.write_text(edited_export(root))
    bad = work / "bad.yaml"
    bad.write_text(BAD_YAML)
    brake = work / "brake.yaml"
    brake.write_text(pruned_config(config.read_text()))
    cli_plan = json.loads(vmreconcile("plan", str(config), "--format", "json", root=root).stdout)
    collections = install_collection(work, ansible)  # the built tarball, not the tree
    before = tree_digest(root)
    run = run_playbook(
        PLAYBOOK,
        work,
        collections=collections,
        ansible=ansible,
        extra_vars={
            "root": str(root),
            "executable": str(VMRECONCILE),
            "treedigest": str(TREEDIGEST),
            "workdir": str(work),
            "config": str(config),
            "bad_config": str(bad),
            "brake_config": str(brake),
            "zoe_password": ZOE_PASSWORD,
            "secret_content": "domains:\n  mydomain.org:\n    base_user: vbase1\n    wildcard: true\n"
            "    domain_aliases: [mydomain.net]\n    users:\n"
            "      zoe:\n        password: {env: ZOE_PASSWORD}\n",
            "bad_content": "domains:\n  mydomain.org:\n    base_user: [\n",
            "missing_user_content": "domains:\n  other.example:\n    base_user: nosuchbaseuser\n",
            "ansible_python_interpreter": MANAGED_PYTHON,
        },
    )
    return dict(
        run=run.to_json(),
        work=str(work),
        root=str(root),
        config=str(config),
        bad=str(bad),
        cli_plan=cli_plan,
        before=before,
        collections=str(collections),
    )


@pytest.fixture(scope="module", params=ANSIBLE_LABELS)
def module_run(request, tmp_path_factory):
    """The module playbook's results, once per session for each ansible-core: the test venv's
    and Debian 12's 2.14."""
    ansible = ansible_installation(request.param)
    data = build_once(
        tmp_path_factory, f"ansible-module-{ansible.label}", lambda work: run_module_playbook(work, ansible)
    )
    run = PlaybookRun.from_json(data["run"])
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    paths = {key: Path(data[key]) for key in ("work", "root", "config", "bad", "collections")}
    return dict(data, run=run, ansible=ansible, **paths)


def test_the_collection_supports_this_ansible_core_without_a_warning(module_run):
    run, ansible = module_run["run"], module_run["ansible"]
    if ansible.label == "2.14":
        assert ansible.version().startswith("2.14.")
    assert UNSUPPORTED_WARNING not in run.stdout + run.stderr


def test_check_mode_reports_the_cli_plan_and_touches_nothing(module_run):
    run, work = module_run["run"], module_run["work"]
    check = run.named("check mode with diff")
    assert check.status == "ok" and check.changed
    digest_0 = json.loads((work / "digest-0.json").read_text())
    digest_1 = json.loads((work / "digest-1.json").read_text())
    assert digest_0 == digest_1 == module_run["before"]
    expected = [(c["action"], c["type"], c["address"], c["part"]) for c in module_run["cli_plan"]["changes"]]
    got = [(c["action"], c["type"], c["address"], c["part"]) for c in check.result["changes"]]
    assert got == expected
    assert ("update", "user", "mydomain.org/me", "tables") in got
    assert ("create", "user", "mydomain.org/zoe", "tables") in got
    assert ("create", "control_line", "control/virtualdomains/mydomain.net", "control") in got
    assert check.result["parts"] == ["control", "tables"]
    assert check.result["summary"] == module_run["cli_plan"]["summary"]
    assert check.result["summary_line"] == "Plan: 4 to add, 1 to change, 0 to destroy."


def test_diff_mode_shows_before_and_after_with_hashes_masked(module_run):
    run = module_run["run"]
    diff = {d["before_header"]: d for d in run.named("check mode with diff").result["diff"]}
    me = diff["update user mydomain.org/me (part tables)"]
    assert me["before"] == 'forwards: ["me-copy@backup.example"]\n'
    assert me["after"] == 'forwards: ["me-copy@new.example"]\n'
    zoe = diff["create user mydomain.org/zoe (part tables)"]
    assert zoe["before"] == ""
    assert '\npassword: "<md5-crypt sha256:' in "\n" + zoe["after"]
    assert ZOE_HASH not in json.dumps(run.named("check mode with diff").result)
    # Ansible's own diff output, as an admin running --diff sees it
    assert "--- before: update user mydomain.org/me (part tables)" in run.stdout
    assert '-forwards: ["me-copy@backup.example"]' in run.stdout
    assert '+forwards: ["me-copy@new.example"]' in run.stdout
    assert '+line: "mydomain.net:vbase1"' in run.stdout
    assert ZOE_HASH not in run.stdout and "$1$" not in run.stdout


def test_first_apply_changes_then_nothing_is_left_to_do(module_run):
    run, root = module_run["run"], module_run["root"]
    first = run.named("first apply")
    assert first.status == "ok" and first.changed
    assert first.result["parts"] == ["control", "tables"]
    assert any("Apply complete: 4 added, 1 changed, 0 destroyed." in m for m in first.result["messages"])
    assert len(first.result["diff"]) == 5
    for name in ("second apply", "check mode after apply"):
        again = run.named(name)
        assert again.status == "ok" and not again.changed, name
        assert again.result["changes"] == [] and again.result["parts"] == []
    assert tree_digest(root) != module_run["before"]
    assert (root / "var/qmail/control/virtualdomains").read_text().splitlines()[-1] == "mydomain.net:vbase1"
    show = json.loads(vmreconcile("show", "--format", "json", root=root).stdout)
    users = {u["name"]: u for u in show["domains"][0]["users"]}
    assert users["zoe"]["password"] == ZOE_HASH
    assert users["me"]["forwards"] == ["me-copy@new.example"]


def test_inline_content_reads_env_secrets_and_never_shows_them(module_run):
    run = module_run["run"]
    secret = run.named("inline content with an env secret, check mode")
    # zoe exists now with a literal md5 hash; the secret differs, so a fresh hash is planned
    assert secret.status == "ok" and secret.changed
    [change] = secret.result["changes"]
    assert (change["action"], change["address"]) == ("update", "mydomain.org/zoe")
    assert change["before"]["password"].startswith("<md5-crypt sha256:")
    assert change["after"]["password"].startswith("<yescrypt sha256:")
    assert ZOE_PASSWORD not in json.dumps(secret.result) and ZOE_PASSWORD not in run.stdout


def test_bad_configuration_fails_with_file_line_col(module_run):
    run, bad = module_run["run"], module_run["bad"]
    failed = run.named("bad yaml file")
    assert failed.status == "failed"
    message = failed.result["msg"]
    assert message.splitlines()[0].startswith(f"{bad}:6:9: ")
    assert "unknown key 'quota'" in message
    assert failed.result["errors"] == [message.splitlines()[0]]
    inline = run.named("bad inline content")
    assert inline.status == "failed"
    assert inline.result["msg"].startswith("<content>:4:1: ") or inline.result["msg"].startswith("<content>:3:")
    assert "vmreconcile-ansible-" not in inline.result["msg"]  # the temporary path is not shown
    missing = run.named("missing base user")
    assert missing.status == "failed" and "nosuchbaseuser" in missing.result["msg"]
    # plan's preflight names the YAML line of the domain whose base user is missing
    [located] = missing.result["errors"]
    assert located.startswith("<content>:") and "domain other.example: base user 'nosuchbaseuser'" in located


def test_documented_options_are_the_module_arguments(module_run):
    """ansible-doc parses the installed module's documentation, and it lists exactly its arguments."""

    done = subprocess.run(
        [str(module_run["ansible"].doc), "--json", "vmreconcile.mail.vmreconcile"],
        capture_output=True,
        text=True,
        env=dict(
            os.environ,
            ANSIBLE_COLLECTIONS_PATH=str(module_run["collections"]),
            ANSIBLE_HOME=str(module_run["work"] / "ansible-home"),
        ),
        check=True,
    )
    doc = json.loads(done.stdout)["vmreconcile.mail.vmreconcile"]
    module = load_script(COLLECTION_SOURCE / "plugins" / "modules" / "vmreconcile.py", "vmr_ansible_module")
    arguments = module.argument_spec()
    options = doc["doc"]["options"]
    assert set(options) == set(arguments)
    for name, argument in arguments.items():
        assert options[name]["type"] == argument["type"], name
        assert options[name].get("default") == argument.get("default"), name
    assert doc["doc"]["attributes"]["check_mode"]["support"] == "full"
    assert set(doc["return"]) >= {"summary", "changes", "parts", "notes", "brake", "messages", "errors"}


def test_safety_brake_refuses_until_forced_and_purge_removes_maildirs(module_run):
    run, work, root = module_run["run"], module_run["work"], module_run["root"]
    refused = run.named("safety brake refuses")
    assert refused.status == "failed" and not refused.changed
    assert refused.result["msg"].startswith("safety brake: refusing to apply (nothing was written)")
    assert refused.result["brake"] and "mydomain.org" in refused.result["brake"][0]
    assert json.loads((work / "digest-2.json").read_text()) == json.loads((work / "digest-3.json").read_text())
    forced = run.named("forced past the brake, purging mailboxes")
    assert forced.status == "ok" and forced.changed
    deleted = sorted(c["address"] for c in forced.result["changes"] if c["action"] == "delete" and c["type"] == "user")
    assert deleted == sorted(f"mydomain.org/{name.lower()}" for name in PRUNED)
    assert any(c["type"] == "maildir" and c["action"] == "delete" for c in forced.result["changes"])
    home = root / "home" / "vbase1"
    assert not (home / "users" / "alice" / "new").exists() and not (home / "users" / "alice" / "cur").exists()
    assert (home / "users" / "me" / "new").is_dir()
    names = {
        u["name"] for u in json.loads(vmreconcile("show", "--format", "json", root=root).stdout)["domains"][0]["users"]
    }
    assert not names & {n.lower() for n in PRUNED} and {"me", "zoe"} <= names
    after = vmreconcile("plan", str(work / "brake.yaml"), "--detailed-exitcode", root=root, check=False)
    assert after.returncode == 0, after.stdout + after.stderr
