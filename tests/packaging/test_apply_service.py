"""examples/systemd/vmreconcile-apply (what vmreconcile-apply.service runs) against a real git checkout.

The checkout is a clone of a bare "origin"; the host is a throwaway --root tree (through
VMRECONCILE_ROOT, which the command honours) and ``vmreconcile`` on PATH is this checkout's. The
script must pull, plan and apply a clean plan; plan and apply nothing for a broken configuration
or a checkout with uncommitted changes; and be a no-op when nothing changed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.checkout_cli import CLI_DIR, REPO
from tests.conftest import environ_without, git
from vmreconcile.cli.demo import build_demo_root
from vmreconcile.desired.load import check_config
from vmreconcile.host import Host
from vmreconcile.live import read_live_state

SCRIPT = REPO / "examples" / "systemd" / "vmreconcile-apply"
CONFIG = """\
version: 1
qmail:
  root: /var/qmail
domains:
  example.test:
    base_user: mailbase
    users:
      alice:
        password: "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"
"""


@pytest.fixture
def setup(tmp_path):
    """origin (bare), the host's checkout of it, a maintainer's clone, and the --root tree."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--bare", "-b", "main", str(origin))
    work = tmp_path / "maintainer"
    git(tmp_path, "clone", str(origin), str(work))
    (work / "mail.yaml").write_text(CONFIG)
    git(work, "add", "mail.yaml")
    git(work, "commit", "-m", "first")
    git(work, "push", "origin", "HEAD:main")
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", str(origin), str(checkout))
    root = tmp_path / "root"
    spec = check_config(checkout / "mail.yaml").spec
    assert spec is not None
    build_demo_root(root, spec)
    return dict(work=work, checkout=checkout, root=root)


def run_script(setup: dict, **extra: str) -> subprocess.CompletedProcess[str]:
    env = environ_without("VMRECONCILE", "RUNTIME_DIRECTORY")
    env.update(
        PATH=f"{CLI_DIR}:{os.environ['PATH']}",
        VMRECONCILE_ROOT=str(setup["root"]),
        VMRECONCILE_APPLY_CHECKOUT=str(setup["checkout"]),
    )
    env.update(extra)
    return subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)


def users(root: Path) -> list[str]:
    state = read_live_state(Host(root))
    return sorted(user.name for domain in state.domains for user in domain.users)


def test_applies_the_checkout_then_has_nothing_to_do(setup):
    first = run_script(setup)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Apply complete" in first.stdout
    assert "alice" in users(setup["root"])
    again = run_script(setup)
    assert again.returncode == 0, again.stderr
    assert "vmreconcile-apply: no changes" in again.stdout


def test_pulls_what_was_pushed_and_applies_it(setup):
    assert run_script(setup).returncode == 0
    (setup["work"] / "mail.yaml").write_text(CONFIG + '      bob:\n        password: "*"\n')
    git(setup["work"], "commit", "-am", "add bob")
    git(setup["work"], "push", "origin", "HEAD:main")
    done = run_script(setup)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bob" in users(setup["root"])
    assert git(setup["checkout"], "rev-parse", "HEAD") == git(setup["work"], "rev-parse", "HEAD")


def test_a_broken_configuration_is_planned_never_applied(setup):
    assert run_script(setup).returncode == 0
    before = users(setup["root"])
    (setup["work"] / "mail.yaml").write_text(CONFIG.replace("alice:", "carol:\n        hard_quota: lots\n      alice:"))
    git(setup["work"], "commit", "-am", "broken")
    git(setup["work"], "push", "origin", "HEAD:main")
    done = run_script(setup)
    assert done.returncode == 1
    assert "planning failed (exit 1): nothing applied" in done.stderr
    assert users(setup["root"]) == before


def test_uncommitted_changes_in_the_checkout_are_refused(setup):
    (setup["checkout"] / "mail.yaml").write_text(CONFIG + '      mallory:\n        password: "*"\n')
    done = run_script(setup)
    assert done.returncode == 1
    assert "uncommitted changes" in done.stderr
    assert "mallory" not in users(setup["root"]) and "alice" not in users(setup["root"])


def test_git_ignored_yaml_in_the_checkout_is_refused(setup):
    """git status hides ignored files, but the configuration directory's loader reads every
    *.yaml: an ignored one would be applied although nobody committed it."""
    checkout = setup["checkout"]
    (checkout / ".git" / "info" / "exclude").write_text("extra.yaml\n")
    (checkout / "extra.yaml").write_text("domains: {}\n")
    done = run_script(setup)
    assert done.returncode == 1
    assert "git-ignored YAML files" in done.stderr
    assert "alice" not in users(setup["root"])


def test_a_directory_that_is_no_checkout_is_refused(setup, tmp_path):
    done = run_script(setup, VMRECONCILE_APPLY_CHECKOUT=str(tmp_path / "nothing"))
    assert done.returncode == 1
    assert "is not a git checkout" in done.stderr


def test_the_saved_plan_goes_to_the_runtime_directory_and_stays_private(setup, tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    done = run_script(setup, RUNTIME_DIRECTORY=str(runtime))
    assert done.returncode == 0, done.stderr
    plan = runtime / "plan.json"
    assert plan.exists() and plan.stat().st_mode & 0o077 == 0


def test_a_domain_that_cannot_be_planned_does_not_block_the_others(setup):
    """A tenant's home with a planted symlink table: that domain is an error, the others are
    planned again with --domain, saved, applied; the script exits 3 and names what it left."""
    broken = CONFIG + "  broken.test:\n    base_user: brokenbase\n"
    (setup["work"] / "mail.yaml").write_text(broken)
    git(setup["work"], "commit", "-am", "second domain")
    git(setup["work"], "push", "origin", "HEAD:main")
    spec = check_config(setup["work"] / "mail.yaml").spec
    assert spec is not None
    build_demo_root(setup["root"], spec)
    (setup["root"] / "home" / "brokenbase" / "passwd.cdb").symlink_to("/etc/shadow")

    done = run_script(setup)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "domain broken.test:" in done.stderr and "symbolic link" in done.stderr
    assert "vmreconcile-apply: some domains cannot be planned (above); applying the others: example.test" in done.stderr
    assert "Apply complete" in done.stdout
    assert "vmreconcile-apply: applied; the domains that could not be planned (above) were left as they were" in (
        done.stderr
    )
    assert "alice" in users_of(setup["root"], "example.test")
    virtualdomains = (setup["root"] / "var" / "qmail" / "control" / "virtualdomains").read_text()
    assert "example.test:mailbase" in virtualdomains and "broken.test" not in virtualdomains

    (setup["root"] / "home" / "brokenbase" / "passwd.cdb").unlink()
    fixed = run_script(setup)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "broken.test:brokenbase" in (setup["root"] / "var" / "qmail" / "control" / "virtualdomains").read_text()


def users_of(root: Path, domain: str) -> list[str]:
    state = read_live_state(Host(root))
    return sorted(user.name for d in state.domains if d.name == domain for user in d.users)
