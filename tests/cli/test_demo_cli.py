"""`vmreconcile demo`: validate -> plan -> apply -> plan on a throwaway root from examples/howto.yaml."""

from __future__ import annotations

import stat

from tests.clirunner import cli_runner
from vmreconcile.cli.demo import find_example
from vmreconcile.cli.main import app
from vmreconcile.host import Host
from vmreconcile.live import read_live_state


def test_demo_runs_the_whole_workflow_and_converges(tmp_path):
    root = tmp_path / "demo"
    result = cli_runner().invoke(app, ["demo", str(root)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.stdout
    steps = ["== 1. validate", "== 2. plan", "== 3. apply --yes", "== 4. plan again"]
    assert [out.index(s) for s in steps] == sorted(out.index(s) for s in steps)
    assert "Plan: 16 to add" in out or "to add" in out.split("== 3.")[0]
    assert out.split("== 4. plan again")[1].splitlines()[1] == "No changes. The host matches the configuration."
    domain = read_live_state(Host(root)).domain("mydomain.org")
    assert [u.name for u in domain.users] == ["mailer-daemon", "postmaster", "root", "me", "myself", "myname", "+"]
    assert stat.S_IMODE((root / "home/myuser/passwd.cdb").stat().st_mode) == 0o600


def test_demo_twice_in_the_same_directory_changes_nothing_the_second_time(tmp_path):
    root = tmp_path / "demo"
    assert cli_runner().invoke(app, ["demo", str(root)]).exit_code == 0
    again = cli_runner().invoke(app, ["demo", str(root)])
    assert again.exit_code == 0
    assert again.stdout.split("== 2. plan")[1].splitlines()[1].startswith("No changes.")


def test_demo_refuses_a_directory_that_holds_something_else(tmp_path):
    (tmp_path / "precious.txt").write_text("keep")
    result = cli_runner().invoke(app, ["demo", str(tmp_path)])
    assert result.exit_code == 1 and "not empty" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_the_example_is_found_from_the_package():
    assert find_example().name == "howto.yaml" and "mydomain.org" in find_example().read_text()
