"""The one hook runner (runtime/process.py) that checkvpw, authvmailmgr and vdeliver share.

Real hook scripts in throwaway directories: which ones run, in which order, with which
environment, and what each kind of failure returns, including the two caller parameters.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmreconcile.runtime.process import EXEC_FAILED, NO_STATUS, run_hook, spawn_wait


def hook(directory: Path, name: str, body: str, mode: int = 0o755) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


@pytest.fixture
def dirs(tmp_path):
    log = tmp_path / "log"
    return tmp_path / "global", tmp_path / "local", log


def ran(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_global_first_then_local_with_the_given_environment(dirs):
    global_dir, local_dir, log = dirs
    hook(global_dir, "h", f'echo "global:$WHO" >> {log}')
    hook(local_dir, "h", f'echo "local:$WHO" >> {log}')
    environ = {"WHO": "me", "PATH": "/usr/bin:/bin"}
    assert run_hook("h", (str(global_dir), str(local_dir)), environ) == 0
    assert ran(log) == ["global:me", "local:me"]


def test_the_first_non_zero_result_stops_the_chain(dirs):
    global_dir, local_dir, log = dirs
    hook(global_dir, "h", f"echo global >> {log}; exit 99")
    hook(local_dir, "h", f"echo local >> {log}")
    assert run_hook("h", (str(global_dir), str(local_dir)), {}) == 99
    assert ran(log) == ["global"]


def test_missing_and_non_executable_hooks_are_skipped_as_zero(dirs):
    global_dir, local_dir, log = dirs
    hook(global_dir, "h", f"echo global >> {log}; exit 3", mode=0o644)
    hook(local_dir, "h", f"echo local >> {log}; exit 4", mode=0o644)
    assert run_hook("h", (str(global_dir), str(local_dir), "/nonexistent"), {}) == 0
    assert ran(log) == []
    (local_dir / "h").chmod(0o744)  # any execute bit counts
    assert run_hook("h", (str(global_dir), str(local_dir)), {}) == 4


def test_a_directory_named_twice_in_a_row_runs_once(dirs):
    global_dir, _, log = dirs
    hook(global_dir, "h", f"echo once >> {log}")
    assert run_hook("h", (str(global_dir), str(global_dir)), {}) == 0
    assert ran(log) == ["once"]


def test_killed_by_a_signal_is_minus_one(dirs):
    global_dir, _, _ = dirs
    hook(global_dir, "h", "kill -TERM $$")
    assert run_hook("h", (str(global_dir),), {}) == NO_STATUS == -1


def test_a_file_that_cannot_be_executed_is_127(dirs):
    global_dir, _, _ = dirs
    (global_dir).mkdir()
    (global_dir / "h").write_bytes(b"\x7fELF garbage, not a program")
    (global_dir / "h").chmod(0o755)
    assert run_hook("h", (str(global_dir),), {}) == EXEC_FAILED == 127


def test_a_directory_in_the_hooks_place_fails_or_is_skipped(dirs):
    """The login programs try to run it (127, as VMailMgr); vdeliver skips it."""
    global_dir, local_dir, log = dirs
    (global_dir / "h").mkdir(parents=True)
    hook(local_dir, "h", f"echo local >> {log}")
    chain = (str(global_dir), str(local_dir))
    assert run_hook("h", chain, {}) == EXEC_FAILED
    assert ran(log) == []
    assert run_hook("h", chain, {}, skip_directories=True) == 0
    assert ran(log) == ["local"]


def test_cannot_start_is_what_a_process_that_never_started_gives(dirs):
    """An environment larger than the kernel takes (E2BIG): no process at all. The login
    programs report VMailMgr's failed-fork -1, vdeliver 127; the parameter says which."""
    global_dir, _, log = dirs
    hook(global_dir, "h", f"echo ran >> {log}")
    huge = {"BIG": "x" * (1 << 20)}
    assert run_hook("h", (str(global_dir),), huge) == NO_STATUS
    assert run_hook("h", (str(global_dir),), huge, cannot_start=EXEC_FAILED) == EXEC_FAILED
    assert ran(log) == []


def test_environ_defaults_to_ours(dirs, monkeypatch):
    global_dir, _, log = dirs
    monkeypatch.setenv("VMRT_HOOK_PROBE", "inherited")
    hook(global_dir, "h", f'echo "$VMRT_HOOK_PROBE" >> {log}')
    assert run_hook("h", (str(global_dir),)) == 0
    assert ran(log) == ["inherited"]


def test_spawn_wait_searches_path_only_when_asked(tmp_path):
    env = {"PATH": "/usr/bin:/bin"}
    assert spawn_wait(["true"], env, search=True) == 0
    assert spawn_wait(["false"], env, search=True) == 1
    assert spawn_wait(["true"], env) == EXEC_FAILED  # no PATH search: ./true does not exist
    assert spawn_wait([str(tmp_path / "missing")], env) == EXEC_FAILED


def test_children_get_sigpipe_back_at_its_default(tmp_path):
    """Python ignores SIGPIPE; a hook must not inherit that (``yes | head`` would spin)."""
    out = tmp_path / "out"
    script = hook(tmp_path, "h", f"grep '^SigIgn' /proc/self/status > {out}")
    assert spawn_wait([str(script)], os.environ) == 0
    ignored = int(out.read_text().split()[1], 16)
    assert not ignored & (1 << (13 - 1)), "SIGPIPE is still ignored in the child"
