"""Offline CI plans: the commands of examples/ci/ run against redacted snapshots of fixture steps.

The host side (publish-snapshot.sh) pushes ``show --format json --redact`` into a config
repository; the CI side (vmreconcile-ci-plan.sh, as the GitHub and GitLab jobs call it) plans
the proposed YAML against it: exit 0 when the YAML is the step's own ``export``, 2 with a
markdown plan when it differs, 1 with file:line when it is invalid.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.checkout_cli import CLI_DIR
from tests.conftest import build_step_root, environ_without, git
from tests.fleet.fleetkit import REPO, load_export, vmreconcile

CI = REPO / "examples" / "ci"
STEP = "10-catchall"
NEW_HASH = "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"


def shell(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run ``script`` like a CI runner would: bash, the checkout's vmreconcile first on PATH."""
    environ = environ_without("VMRECONCILE")
    environ.update(PATH=f"{CLI_DIR}:{os.environ['PATH']}", **env)
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A fixture-step host: its root, its export (the YAML that matches) and a redacted snapshot."""
    work = tmp_path_factory.mktemp("ci-host")
    root = work / "root"
    build_step_root(STEP, root)
    export = vmreconcile("export", root=root).stdout
    snapshot = vmreconcile("show", "--format", "json", "--redact", root=root).stdout
    return dict(root=root, export=export, snapshot=snapshot)


def config_repo(path: Path, hosts: dict[str, tuple[str, str]]) -> Path:
    """hosts/<name>/config/mail.yaml and snapshot.json, plus ci/vmreconcile-ci-plan.sh (as copied)."""
    for name, (config, snapshot) in hosts.items():
        (path / "hosts" / name / "config").mkdir(parents=True)
        (path / "hosts" / name / "config" / "mail.yaml").write_text(config)
        (path / "hosts" / name / "snapshot.json").write_text(snapshot)
    (path / "ci").mkdir(exist_ok=True)
    shutil.copy(CI / "vmreconcile-ci-plan.sh", path / "ci" / "vmreconcile-ci-plan.sh")
    return path


def differing(export: str) -> str:
    """The export with a changed forward and a changed literal hash (one seen only through its digest)."""
    doc = load_export(export)
    users = doc["domains"]["mydomain.org"]["users"]
    users["me"]["forwards"] = ["me-copy@elsewhere.example"]
    users["alice"]["password"] = NEW_HASH
    return yaml.safe_dump(doc, sort_keys=False)


def run_ci_plan(repo: Path) -> subprocess.CompletedProcess:
    return shell("sh ci/vmreconcile-ci-plan.sh hosts vmreconcile-plan", repo)


def test_matching_yaml_plans_no_changes(host, tmp_path):
    repo = config_repo(tmp_path, {"mx1": (host["export"], host["snapshot"])})
    done = run_ci_plan(repo)
    assert done.returncode == 0, done.stdout + done.stderr
    plan_md = (repo / "vmreconcile-plan" / "plan.md").read_text()
    assert plan_md.startswith("## mx1\n\n### vmreconcile plan: 0 to add, 0 to change, 0 to destroy")
    assert "No changes. The host matches the configuration." in plan_md
    assert json.loads((repo / "vmreconcile-plan" / "mx1.json").read_text())["changes"] == []


def test_differing_yaml_exits_2_with_a_markdown_plan_and_no_hashes(host, tmp_path):
    repo = config_repo(tmp_path, {"mx1": (differing(host["export"]), host["snapshot"])})
    done = run_ci_plan(repo)
    assert done.returncode == 2, done.stdout + done.stderr
    plan_md = (repo / "vmreconcile-plan" / "plan.md").read_text()
    assert done.stdout == plan_md
    assert "### vmreconcile plan: 0 to add, 2 to change, 0 to destroy" in plan_md
    assert "| | Change | Fields |" in plan_md
    rows = {line.split(" | ")[1]: line for line in plan_md.splitlines() if line.startswith("| ~ change |")}
    assert set(rows) == {"`user mydomain.org/me`", "`user mydomain.org/alice`"}
    assert "`forwards [me-copy@backup.example] → [me-copy@elsewhere.example]`" in rows["`user mydomain.org/me`"]
    assert "`password <redacted sha256:" in rows["`user mydomain.org/alice`"]
    assert "→ <md5-crypt sha256:" in rows["`user mydomain.org/alice`"]
    assert "$1$" not in plan_md and NEW_HASH not in (repo / "vmreconcile-plan" / "mx1.json").read_text()


def test_invalid_yaml_exits_1_with_file_line_col(host, tmp_path):
    broken = host["export"].replace("  mydomain.org:\n", "  mydomain.org:\n    colour: blue\n", 1)
    repo = config_repo(tmp_path, {"mx1": (broken, host["snapshot"])})
    done = run_ci_plan(repo)
    assert done.returncode == 1, done.stdout + done.stderr
    plan_md = (repo / "vmreconcile-plan" / "plan.md").read_text()
    line = broken.splitlines().index("    colour: blue") + 1
    assert "**The configuration is invalid:**" in plan_md
    assert f"hosts/mx1/config/mail.yaml:{line}:5: " in plan_md and "colour" in plan_md


def test_secret_passwords_are_not_verifiable_offline(host, tmp_path):
    """CI has no secrets: an existing user's secret is noted, not compared; a new one is shown as '*'."""
    doc = load_export(host["export"])
    users = doc["domains"]["mydomain.org"]["users"]
    users["me"]["password"] = {"env": "ME_PASSWORD"}
    repo = config_repo(tmp_path / "existing", {"mx1": (yaml.safe_dump(doc, sort_keys=False), host["snapshot"])})
    done = run_ci_plan(repo)  # ME_PASSWORD is not set
    plan_md = (repo / "vmreconcile-plan" / "plan.md").read_text()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "- mydomain.org/me: password from a env secret is not verifiable offline" in plan_md

    users["zoe"] = {"password": {"file": "secrets/zoe"}}
    repo = config_repo(tmp_path / "new", {"mx1": (yaml.safe_dump(doc, sort_keys=False), host["snapshot"])})
    done = run_ci_plan(repo)
    plan_md = (repo / "vmreconcile-plan" / "plan.md").read_text()
    assert done.returncode == 2, done.stdout + done.stderr
    assert "| + add | `user mydomain.org/zoe` | `maildir created` |" in plan_md  # no password: '*', see the note
    assert "mydomain.org/zoe: password from a file secret that is not available offline" in plan_md


def test_github_and_gitlab_jobs_run_their_commands(host, tmp_path):
    """The plan step of each job, as written in the example files, on a repository with two hosts."""
    repo = config_repo(
        tmp_path, {"mx1": (host["export"], host["snapshot"]), "mx2": (differing(host["export"]), host["snapshot"])}
    )
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    steps = {s.get("name"): s for s in workflow["jobs"]["plan"]["steps"]}
    output, summary = tmp_path / "github-output", tmp_path / "step-summary"
    done = shell(
        steps["Validate and plan against the hosts' snapshots"]["run"],
        repo,
        GITHUB_OUTPUT=str(output),
        GITHUB_STEP_SUMMARY=str(summary),
    )
    assert done.returncode == 0, done.stderr
    assert output.read_text() == "exitcode=2\n"
    plan_md = summary.read_text()
    assert "## mx1\n\n### vmreconcile plan: 0 to add, 0 to change, 0 to destroy" in plan_md
    assert "## mx2\n\n### vmreconcile plan: 0 to add, 2 to change, 0 to destroy" in plan_md
    gate = steps["Fail on an invalid configuration or a failed plan"]["run"].replace(
        "${{ steps.plan.outputs.exitcode }}", output.read_text().split("=")[1].strip()
    )
    assert shell(gate, repo).returncode == 0

    shutil.rmtree(repo / "vmreconcile-plan")
    job = yaml.safe_load((CI / "gitlab-ci.yml").read_text())["vmreconcile-plan"]
    script = "\n".join(line for line in job["script"] if "pip install" not in line)
    done = shell("set -eo pipefail\n" + script, repo)  # as GitLab's shell executor runs it
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "vmreconcile-plan" / "exitcode").read_text() == "2\n"
    assert job["artifacts"]["paths"] == ["vmreconcile-plan/"]
    assert "## mx2" in (repo / "vmreconcile-plan" / "plan.md").read_text()

    (repo / "hosts" / "mx2" / "config" / "mail.yaml").write_text("domains: [\n")
    shutil.rmtree(repo / "vmreconcile-plan")
    assert shell("set -eo pipefail\n" + script, repo).returncode != 0  # an invalid config fails the job


def test_host_publishes_its_snapshot_and_ci_plans_against_it(host, tmp_path):
    remote = tmp_path / "config.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    seed = tmp_path / "seed"
    subprocess.run(["git", "clone", "-q", str(remote), str(seed)], check=True, capture_output=True)
    (seed / "hosts" / "mx1" / "config").mkdir(parents=True)
    (seed / "hosts" / "mx1" / "config" / "mail.yaml").write_text(differing(host["export"]))
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "config of mx1")
    git(seed, "push", "-q", "origin", "HEAD")
    checkout = tmp_path / "on-host"
    subprocess.run(["git", "clone", "-q", str(remote), str(checkout)], check=True, capture_output=True)
    git(checkout, "config", "user.name", "mx1")
    git(checkout, "config", "user.email", "root@mx1.example.test")

    publish = f"sh {CI / 'publish-snapshot.sh'} {tmp_path / 'var' / 'snapshot.json'} {checkout}"
    env = {"VMRECONCILE_ROOT": str(host["root"]), "HOST": "mx1"}
    for _ in range(2):  # the second run finds nothing new: no empty commit
        done = shell(publish, tmp_path, **env)
        assert done.returncode == 0, done.stderr
    log = git(remote, "log", "--format=%s")
    assert log.splitlines() == ["snapshot of mx1", "config of mx1"]
    published = json.loads(git(remote, "show", "HEAD:hosts/mx1/snapshot.json"))
    assert published == json.loads(host["snapshot"])
    assert published["redacted"] is True

    git(seed, "pull", "-q", "--ff-only")
    shutil.copy(CI / "vmreconcile-ci-plan.sh", seed / "ci.sh")
    done = shell("sh ci.sh hosts out", seed)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "`user mydomain.org/alice`" in (seed / "out" / "plan.md").read_text()
