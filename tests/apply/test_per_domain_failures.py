"""One tenant cannot block the others at apply time (security review #5).

A real flock held by another process on one domain's ``passwd.cdb.tmp`` (VMailMgr's own lock:
a running vadduser, a stuck tool) while three domains are applied: the other two are written
and routed, the locked one is left as it was (no control line mentions it), apply exits 3 with
one line per failed domain, the history records what was applied, and a second apply after the
lock is released converges.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clirunner import cli_runner
from tests.conftest import IS_ROOT, TREE_GID, TREE_UID, own_home
from vmreconcile import atomic
from vmreconcile.apply.execute import lines_without_failed
from vmreconcile.cli.main import app
from vmreconcile.formats.control import HOSTS, MAP
from vmreconcile.plan.changes import Change

DOMAINS = ("a.example", "b.example", "c.example")
CONFIG = "".join(f"  {d}:\n    base_user: u{d[0]}\n    users:\n      me: {{password: null}}\n" for d in DOMAINS)


def three_domain_root(root: Path) -> dict[str, Path]:
    (root / "etc" / "vmailmgr").mkdir(parents=True)
    (root / "var" / "qmail" / "control").mkdir(parents=True)
    (root / "var" / "qmail" / "control" / "rcpthosts").write_text("localhost\n")
    homes, lines = {}, []
    for i, domain in enumerate(DOMAINS):
        user = f"u{domain[0]}"
        uid = TREE_UID + i if IS_ROOT else TREE_UID
        lines.append(f"{user}:x:{uid}:{TREE_GID}::/home/{user}:/bin/sh\n")
        home = root / "home" / user
        home.mkdir(parents=True)
        own_home(home, uid, TREE_GID)
        homes[domain] = home
    (root / "etc" / "passwd").write_text("".join(lines))
    return homes


def run(root: Path, *args: str):
    return cli_runner().invoke(app, ["--root", str(root), *args], catch_exceptions=False)


class Locker:
    """Another process holding an flock on a file, as a writer that uses VMailMgr's temp file
    would; on release it removes the file, as such a writer does when it is done."""

    def __init__(self, path: Path) -> None:
        code = (
            "import fcntl, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "os.unlink(sys.argv[1])\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "locked\n"

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("done\n")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


@pytest.fixture
def locker_cleanup():
    lockers: list[Locker] = []
    yield lockers
    for locker in lockers:
        if locker.proc.poll() is None:
            locker.proc.kill()
            locker.proc.wait()


def test_a_lock_held_on_one_domains_table_fails_that_domain_only_and_a_second_apply_converges(
    tmp_path, monkeypatch, locker_cleanup
):
    monkeypatch.setattr(atomic, "TEMP_TIMEOUT", 0.5)  # the wait for the writer holding it (30 s)
    root = tmp_path / "root"
    homes = three_domain_root(root)
    config = tmp_path / "mail.yaml"
    config.write_text("domains:\n" + CONFIG)
    locker = Locker(homes["b.example"] / "passwd.cdb.tmp")
    locker_cleanup.append(locker)

    result = run(root, "apply", str(config), "--yes")

    assert result.exit_code == 3, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "audit line" not in line]  # no syslog here
    assert errors[0] == ("vmreconcile: 1 domain(s) failed and were left as they were; every other change was applied:")
    assert errors[1].startswith("  - b.example: table: ")
    assert "passwd.cdb.tmp: exists and another writer (vadduser, vmreconcile) is still using it" in errors[1]
    assert errors[-1] == "vmreconcile: apply again once those are fixed; it carries out what is left"
    assert "Apply complete" not in result.stdout
    for domain in ("a.example", "c.example"):
        assert (homes[domain] / "passwd.cdb").is_file() and (homes[domain] / "users" / "me" / "new").is_dir()
    assert not (homes["b.example"] / "passwd.cdb").exists()
    control = root / "var" / "qmail" / "control"
    assert (control / "virtualdomains").read_text() == "a.example:ua\nc.example:uc\n"
    assert (control / "rcpthosts").read_text() == "localhost\na.example\nc.example\n"
    assert (homes["b.example"] / "passwd.cdb.tmp").exists()  # the other writer's file is left alone

    listed = json.loads(run(root, "history", "--format", "json").stdout)
    assert [e["outcome"] for e in listed] == ["failed"]
    entry = json.loads(run(root, "history", "show", str(listed[0]["id"]), "--format", "json").stdout)
    assert [e.split(":", 1)[0] for e in entry["errors"]] == ["b.example"]
    files = {f["path"]: f for f in entry["files"]}
    assert files["/home/ub/passwd.cdb"]["after"]["type"] == "missing"  # recorded as not written
    assert files["/home/ua/passwd.cdb"]["after"]["type"] == "file"
    assert files["/home/uc/passwd.cdb"]["after"]["type"] == "file"

    pending = run(root, "plan", str(config), "--detailed-exitcode")
    assert pending.exit_code == 2
    assert "b.example" in pending.stdout and "a.example  " not in pending.stdout

    locker.release()
    again = run(root, "apply", str(config), "--yes")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert (homes["b.example"] / "passwd.cdb").is_file()
    assert (control / "virtualdomains").read_text() == "a.example:ua\nc.example:uc\nb.example:ub\n"
    assert run(root, "plan", str(config), "--detailed-exitcode").exit_code == 0


def test_a_table_that_moved_fails_its_domain_and_keeps_its_control_lines_as_they_were(tmp_path, monkeypatch):
    """An existing domain whose table changed between plan and apply (TableMoved): its update
    is not written, a new alias of it is not routed, and the other domains are applied."""
    from vmreconcile.apply import execute as execute_module

    root = tmp_path / "root"
    homes = three_domain_root(root)
    config = tmp_path / "mail.yaml"
    config.write_text("domains:\n" + CONFIG)
    assert run(root, "apply", str(config), "--yes").exit_code == 0
    grown = CONFIG.replace("    base_user: ub\n", "    base_user: ub\n    domain_aliases: [b-alias.example]\n")
    config.write_text("domains:\n" + grown.replace("me: {password: null}", "me: {password: null, personal: x}"))
    real_digest = execute_module.current_table_digest

    def moved(dir_fd, name, where=None):  # vadduser wrote b's table after the plan read it
        if where and "/home/ub/" in where:
            return "0" * 64
        return real_digest(dir_fd, name, where)

    monkeypatch.setattr(execute_module, "current_table_digest", moved)
    result = run(root, "apply", str(config), "--yes")
    assert result.exit_code == 3, result.stdout + result.stderr
    assert "  - b.example: table: ~ub/passwd.cdb changed since the plan was made" in result.stderr
    control = root / "var" / "qmail" / "control"
    assert "b-alias.example" not in (control / "virtualdomains").read_text()
    assert "b-alias.example" not in (control / "rcpthosts").read_text()
    monkeypatch.setattr(execute_module, "current_table_digest", real_digest)
    assert run(root, "apply", str(config), "--yes").exit_code == 0
    assert "b-alias.example:ub" in (control / "virtualdomains").read_text()
    assert run(root, "plan", str(config), "--detailed-exitcode").exit_code == 0
    assert all((homes[d] / "passwd.cdb").is_file() for d in DOMAINS)


def _line(action, name, key, before=None, after=None):
    return Change(
        action=action,
        type="control_line",
        address=f"control/{name}/{key}",
        part="control",
        before=before or {},
        after=after or {},
        domain=None,
        target=name,
    )


def test_lines_of_a_failed_domain_are_left_as_they_were():
    owners = {"bad.example": {"bad.example"}, ".bad.example": {"bad.example"}, "ok.example": {"ok.example"}}
    desired = ("# comment", "ok.example:uok", "bad.example:unew", ".bad.example:unew")
    changes = (
        _line("create", "virtualdomains", "ok.example", after={"line": "ok.example:uok"}),
        _line(
            "update", "virtualdomains", "bad.example", {"lines": ["bad.example:uold"]}, {"lines": ["bad.example:unew"]}
        ),
        _line("create", "virtualdomains", ".bad.example", after={"line": ".bad.example:unew"}),
    )
    assert lines_without_failed(MAP, desired, changes, owners, {"bad.example": "x"}) == (
        "# comment",
        "ok.example:uok",
        "bad.example:uold",
    )
    assert lines_without_failed(MAP, desired, changes, owners, {}) == desired
    removed = (_line("delete", "rcpthosts", "bad.example", before={"line": "bad.example"}),)
    assert lines_without_failed(HOSTS, ("localhost",), removed, owners, {"bad.example": "x"}) == (
        "localhost",
        "bad.example",
    )


def test_a_symlink_planted_in_one_home_while_apply_runs_fails_that_domain_only(tmp_path, monkeypatch):
    """The tenant swaps ``users/`` for a link to somewhere else after the plan: apply never
    follows it, b.example fails (exit 3), a and c are applied and read back (b's home is not
    read back: it is left as it was)."""
    from vmreconcile.apply import execute as execute_module

    root = tmp_path / "root"
    homes = three_domain_root(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = tmp_path / "mail.yaml"
    config.write_text("domains:\n" + CONFIG)
    real_setup = execute_module.Executor.setup_domain

    def planted(self, domain):
        if domain.name == "b.example":
            (homes["b.example"] / "users").symlink_to(elsewhere)
        return real_setup(self, domain)

    monkeypatch.setattr(execute_module.Executor, "setup_domain", planted)
    result = run(root, "apply", str(config), "--yes")
    assert result.exit_code == 3, result.stdout + result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(failed) == 1 and failed[0].startswith("  - b.example: domain setup: "), result.stderr
    assert "symbolic link" in failed[0]
    assert list(elsewhere.iterdir()) == []
    assert not (homes["b.example"] / "passwd.cdb").exists()
    assert (homes["a.example"] / "passwd.cdb").is_file() and (homes["c.example"] / "passwd.cdb").is_file()
    assert "b.example" not in (root / "var" / "qmail" / "control" / "virtualdomains").read_text()


def applied_three_domains(tmp_path: Path) -> tuple[Path, dict[str, Path], Path]:
    """The three domains applied once (so that the next apply renames, prunes ...)."""
    root = tmp_path / "root"
    homes = three_domain_root(root)
    config = tmp_path / "mail.yaml"
    config.write_text("domains:\n" + CONFIG)
    assert run(root, "apply", str(config), "--yes").exit_code == 0
    return root, homes, config


def failed_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "audit line" not in line]  # no syslog here


def apply_with_b_locked(root, config, homes, locker_cleanup, shown_as: str):
    """Apply while another writer holds ~ub/passwd.cdb.tmp; b's domain (named ``shown_as`` in
    the plan) is the one failed domain. Returns (the lock, to release; apply's result)."""
    locker = Locker(homes["b.example"] / "passwd.cdb.tmp")
    locker_cleanup.append(locker)
    result = run(root, "apply", str(config), "--yes")
    assert result.exit_code == 3, result.stdout + result.stderr
    errors = failed_lines(result)
    assert errors[0] == "vmreconcile: 1 domain(s) failed and were left as they were; every other change was applied:"
    assert errors[1].startswith(f"  - {shown_as}: table: ~ub/passwd.cdb.tmp: exists and another writer")
    return locker, result


def test_a_renamed_domain_that_fails_keeps_its_old_name_routed_and_accepted(tmp_path, monkeypatch, locker_cleanup):
    """b.example becomes n.example (same base user, so the same table) with a changed entry,
    while another writer holds ~ub/passwd.cdb.tmp. The old name has no owner in the desired
    state, but it is still b's line: it stays in virtualdomains and rcpthosts, the new name is
    not added, so b's mail is still routed and accepted; a.example's change is applied."""
    monkeypatch.setattr(atomic, "TEMP_TIMEOUT", 0.5)
    root, homes, config = applied_three_domains(tmp_path)
    control = root / "var" / "qmail" / "control"
    routed, accepted = (control / "virtualdomains").read_text(), (control / "rcpthosts").read_text()
    renamed = CONFIG.replace("  b.example:\n", "  n.example:\n")
    renamed = renamed.replace(
        "base_user: ub\n    users:\n      me: {password: null}",
        "base_user: ub\n    users:\n      me: {password: null, personal: Nora}",
    )
    renamed = renamed.replace(
        "base_user: ua\n    users:\n      me: {password: null}",
        "base_user: ua\n    users:\n      me: {password: null, personal: Ada}",
    )
    config.write_text("domains:\n" + renamed)
    locker, result = apply_with_b_locked(root, config, homes, locker_cleanup, "n.example")
    assert (control / "virtualdomains").read_text() == routed == "a.example:ua\nb.example:ub\nc.example:uc\n"
    assert (control / "rcpthosts").read_text() == accepted == "localhost\na.example\nb.example\nc.example\n"
    assert "control/virtualdomains changed" not in result.stdout  # nothing for qmail-send to reread
    shown = json.loads(run(root, "show", "--format", "json").stdout)
    personal = {(d["name"], u["name"]): u.get("personal") for d in shown["domains"] for u in d["users"]}
    assert personal[("a.example", "me")] == "Ada" and personal[("b.example", "me")] == ""  # b's table as it was

    locker.release()
    again = run(root, "apply", str(config), "--yes")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert (control / "virtualdomains").read_text() == "a.example:ua\nc.example:uc\nn.example:ub\n"
    assert (control / "rcpthosts").read_text() == "localhost\na.example\nc.example\nn.example\n"
    assert run(root, "plan", str(config), "--detailed-exitcode").exit_code == 0


def test_a_domain_whose_only_table_change_is_a_delete_fails_before_any_control_line_is_written(
    tmp_path, monkeypatch, locker_cleanup
):
    """b.example gets ``prune: true`` (so its entry ``old`` goes: the table unit starts with a
    delete) and a new alias x1.example, while another writer holds ~ub/passwd.cdb.tmp. The
    table is written before the control files, so its failure is known in time: x1.example is
    neither routed nor accepted, and "left as they were" is true; a.example's alias is applied."""
    monkeypatch.setattr(atomic, "TEMP_TIMEOUT", 0.5)
    root = tmp_path / "root"
    homes = three_domain_root(root)
    config = tmp_path / "mail.yaml"
    with_old = CONFIG.replace("me: {password: null}\n", "me: {password: null}\n      old: {password: null}\n")
    config.write_text("domains:\n" + with_old)
    assert run(root, "apply", str(config), "--yes").exit_code == 0
    control = root / "var" / "qmail" / "control"
    routed, accepted = (control / "virtualdomains").read_text(), (control / "rcpthosts").read_text()
    pruned = CONFIG.replace("base_user: ub\n", "base_user: ub\n    prune: true\n    domain_aliases: [x1.example]\n")
    pruned = pruned.replace("base_user: ua\n", "base_user: ua\n    domain_aliases: [xa.example]\n")
    config.write_text("domains:\n" + pruned)
    plan = json.loads(run(root, "plan", str(config), "--format", "json").stdout)
    assert [c["address"] for c in plan["changes"] if c["action"] == "delete"] == ["b.example/old"]  # a's, c's stay
    locker, result = apply_with_b_locked(root, config, homes, locker_cleanup, "b.example")
    assert routed == "a.example:ua\nb.example:ub\nc.example:uc\n"
    assert (control / "virtualdomains").read_text() == routed + "xa.example:ua\n"
    assert (control / "rcpthosts").read_text() == accepted + "xa.example\n"
    listed = json.loads(run(root, "history", "--format", "json").stdout)
    assert sorted(e["outcome"] for e in listed) == ["complete", "failed"], listed
    last = max(listed, key=lambda e: e["id"])
    entry = json.loads(run(root, "history", "show", str(last["id"]), "--format", "json").stdout)
    assert [e.split(":", 1)[0] for e in entry["errors"]] == ["b.example"]
    files = {f["path"]: f for f in entry["files"]}
    table = {side: dict(files["/home/ub/passwd.cdb"][side], blob=None) for side in ("before", "after")}
    assert table["before"] == table["after"] and table["after"]["type"] == "file"  # recorded as not written

    locker.release()
    again = run(root, "apply", str(config), "--yes")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert "x1.example:ub" in (control / "virtualdomains").read_text()
    assert "x1.example" in (control / "rcpthosts").read_text().splitlines()
    assert run(root, "plan", str(config), "--detailed-exitcode").exit_code == 0


def test_a_domain_failing_after_the_control_files_were_written_is_not_reported_as_left_as_it_was(
    tmp_path, monkeypatch, locker_cleanup
):
    """The plan's order writes homes before control files; if a unit of a domain were still
    run after them (here the order is turned around on purpose) and failed, the domain was not
    left as it was: apply says which control files carry its lines, exits 1 (not 3) with what
    was written, and the history entry holds that error."""
    from vmreconcile.apply import execute as execute_module

    monkeypatch.setattr(atomic, "TEMP_TIMEOUT", 0.5)
    real_group = execute_module.group_units

    def control_files_first(changes):
        units = real_group(changes)
        return sorted(units, key=lambda u: not isinstance(u.target, execute_module.ControlFileTarget))

    monkeypatch.setattr(execute_module, "group_units", control_files_first)
    root, homes, config = applied_three_domains(tmp_path)
    control = root / "var" / "qmail" / "control"
    config.write_text(
        "domains:\n"
        + CONFIG.replace("base_user: ub\n", "base_user: ub\n    domain_aliases: [x1.example]\n").replace(
            "me: {password: null}\n", "me: {password: null, personal: P}\n"
        )
    )
    locker = Locker(homes["b.example"] / "passwd.cdb.tmp")
    locker_cleanup.append(locker)

    result = run(root, "apply", str(config), "--yes")

    assert result.exit_code == 1, result.stdout + result.stderr
    assert "x1.example:ub" in (control / "virtualdomains").read_text()  # written before b failed
    errors = failed_lines(result)
    assert not any("left as they were" in line for line in errors)
    assert errors[0].startswith("vmreconcile: error: b.example: table: ~ub/passwd.cdb.tmp: exists and another")
    assert errors[0].endswith(
        " (after control/virtualdomains, control/rcpthosts had been written with this domain's lines as "
        "planned; its remaining changes were not made)"
    )
    assert errors[1].startswith("vmreconcile: written before the error: control/virtualdomains, control/rcpthosts, ")
    assert "b.example: table" not in errors[1], result.stderr
    listed = json.loads(run(root, "history", "--format", "json").stdout)
    entry = json.loads(run(root, "history", "show", str(max(e["id"] for e in listed)), "--format", "json").stdout)
    assert entry["outcome"] == "failed" and entry["errors"] == [errors[0].removeprefix("vmreconcile: error: ")]
