"""The reload command runs once, without a shell, on a real host; its failure becomes an error."""

from __future__ import annotations

from vmreconcile.apply.execute import Executor, run_reload
from vmreconcile.host import Host
from vmreconcile.model import HostState
from vmreconcile.plan.changes import Plan


def executor(host: Host) -> Executor:
    return Executor(host, Plan(changes=(), desired=HostState(), live_checksum="sha256:x"), log=lambda m: None)


def test_reload_runs_on_the_real_host_and_reports_success(tmp_path):
    runner = executor(Host(None))
    marker = tmp_path / "reloaded"
    run_reload(Host(None), f"touch {marker}", runner)
    assert marker.exists()
    assert runner.result.errors == [] and runner.result.messages == [f"ran reload command `touch {marker}`"]


def test_a_failing_reload_is_an_error_with_its_exit_status(tmp_path):
    runner = executor(Host(None))
    run_reload(Host(None), "sh -c 'echo nope >&2; exit 3'", runner)
    assert runner.result.errors == ["reload command `sh -c 'echo nope >&2; exit 3'` failed (exit 3): nope"]


def test_a_missing_reload_program_is_an_error(tmp_path):
    runner = executor(Host(None))
    run_reload(Host(None), str(tmp_path / "no-such-program"), runner)
    assert runner.result.errors and "could not run" in runner.result.errors[0]


def test_under_root_the_reload_is_only_printed(tmp_path):
    runner = executor(Host(tmp_path))
    marker = tmp_path / "reloaded"
    run_reload(Host(tmp_path), f"touch {marker}", runner)
    assert not marker.exists() and "would run" in runner.result.messages[0]
