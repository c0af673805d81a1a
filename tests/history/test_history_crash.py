"""SIGKILL at every checkpoint of a recorded apply and of a rollback: the history holds no entry
or a complete one, the next run recovers what the killed one left, and rolling back what was
recorded always returns the files to the state before the killed run, byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.clirunner import cli_runner
from tests.history.test_history_cli import CONFIG_A, CONFIG_B, NOW, managed_files
from tests.plan.reconcile_helpers import empty_root
from vmreconcile import atomic
from vmreconcile.apply import crashpoint
from vmreconcile.cli.main import app


def clone(source: Path, target: Path) -> None:
    """A copy of a root tree with its owners (copytree keeps modes, not owners)."""
    shutil.copytree(source, target, symlinks=True)
    for path in [target, *target.rglob("*")]:
        info = (source / path.relative_to(target)).lstat()
        os.chown(path, info.st_uid, info.st_gid, follow_symlinks=False)


def run(root: Path, *args: str):
    return cli_runner().invoke(app, ["--root", str(root), *args], catch_exceptions=False)


def run_killed(root: Path, crash_at: int, *args: str) -> int:
    """Fork; the child runs the command with VMRECONCILE_CRASH_AT=crash_at. The wait status."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 1
        try:
            os.environ["VMRECONCILE_CRASH_AT"] = str(crash_at)
            crashpoint.reset()
            code = 0 if run(root, *args).exit_code == 0 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def checkpoints_of(root: Path, *args: str) -> int:
    crashpoint.reset()
    assert run(root, *args).exit_code == 0
    return crashpoint.passed()


def complete_entries(root: Path) -> list[int]:
    """The ids of the entries, each checked complete: outcome, every "after", every blob."""
    history = root / "var/lib/vmreconcile/history"
    ids = []
    for name in sorted(os.listdir(history)):
        if not name.isdigit():
            assert name.startswith((".prepare-", ".pending-")), name  # not entries: recovered next run
            continue
        entry = json.loads((history / name / "entry.json").read_text())
        assert entry["outcome"] in ("complete", "interrupted", "failed"), name
        for record in entry["files"]:
            assert record["after"] is not None, name
            before = record["before"]
            if before["blob"] is not None:
                data = (history / name / before["blob"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == before["sha256"], name
        ids.append(entry["id"])
    return ids


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A root after apply A (entry 1), and the counts of checkpoints of apply B and of rollback 2."""
    top = tmp_path_factory.mktemp("history-crash")
    root = top / "base"
    empty_root(root, uid=1008, gid=1008)
    (top / "a.yaml").write_text(CONFIG_A)
    (top / "b.yaml").write_text(CONFIG_B)
    assert run(root, "apply", str(top / "a.yaml"), "--yes", "--now", str(NOW)).exit_code == 0
    probe = top / "probe"
    clone(root, probe)
    apply_count = checkpoints_of(probe, "apply", str(top / "b.yaml"), "--yes", "--now", str(NOW))
    after_b = top / "after-b"
    clone(probe, after_b)
    rollback_count = checkpoints_of(probe, "rollback", "2", "--yes")
    assert apply_count >= 30 and rollback_count >= 25
    return top, root, after_b, apply_count, rollback_count


def without_backups(files: dict) -> dict:
    return {k: v for k, v in files.items() if "/.qmail-default~" not in k}


def undo_all_since(root: Path, first: int) -> None:
    """Roll back every entry from the newest down to ``first``."""
    for entry_id in sorted((i for i in complete_entries(root) if i >= first), reverse=True):
        result = run(root, "rollback", str(entry_id), "--yes")
        assert result.exit_code == 0, (entry_id, result.output)


def test_apply_killed_at_every_checkpoint(base, tmp_path, monkeypatch):
    top, root, after_b_root, count, _ = base
    monkeypatch.setattr(atomic, "STALE_AFTER", 0.0)  # a killed writer's temp file is stale at once
    after_a, after_b = managed_files(root), managed_files(after_b_root)
    outcomes = set()
    for n in range(1, count + 1):
        work = tmp_path / f"run{n}"
        clone(root, work)
        status = run_killed(work, n, "apply", str(top / "b.yaml"), "--yes", "--now", str(NOW))
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, n
        assert complete_entries(work) in ([1], [1, 2]), n  # no entry, or a complete one
        files = managed_files(work)
        for name in after_a.keys() | after_b.keys():
            assert files.get(name) in (after_a.get(name), after_b.get(name)), (n, name)
        again = run(work, "apply", str(top / "b.yaml"), "--yes", "--now", str(NOW))
        assert again.exit_code == 0, (n, again.output)
        # a backup the killed run made is kept, and the rerun makes its own (.qmail-default~2)
        assert without_backups(managed_files(work)) == without_backups(after_b), n
        entries = complete_entries(work)
        assert entries[0] == 1 and not [p for p in os.listdir(work / "var/lib/vmreconcile/history") if "-" in p]
        second = json.loads((work / "var/lib/vmreconcile/history/000002/entry.json").read_text())
        outcomes.add(second["outcome"])
        undo_all_since(work, 2)
        assert managed_files(work) == after_a, n
        shutil.rmtree(work)
    assert outcomes == {"interrupted", "complete"}  # both ends of the window were hit


def test_rollback_killed_at_every_checkpoint(base, tmp_path, monkeypatch):
    _, root, after_b_root, _, count = base
    monkeypatch.setattr(atomic, "STALE_AFTER", 0.0)
    after_a, after_b = managed_files(root), managed_files(after_b_root)
    for n in range(1, count + 1):
        work = tmp_path / f"run{n}"
        clone(after_b_root, work)
        status = run_killed(work, n, "rollback", "2", "--yes")
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, n
        assert complete_entries(work) in ([1, 2], [1, 2, 3]), n
        files = managed_files(work)
        for name in after_a.keys() | after_b.keys():
            assert files.get(name) in (after_a.get(name), after_b.get(name)), (n, name)
        again = run(work, "rollback", "2", "--yes")
        assert again.exit_code == 0, (n, again.output)
        assert managed_files(work) == after_a, n
        shutil.rmtree(work)
