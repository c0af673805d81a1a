"""History, rollback and the audit trail through the CLI, on a --root tree with a real syslog socket.

The issue's "done": apply A, apply B, rollback of B gives files byte-identical to after A
(tables, control files, options, .qmail-default, with their modes and owners), rollback of A
gives them as before A; the history and the syslog show every step.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from tests.clirunner import cli_runner
from tests.conftest import git
from tests.history.syslogkit import LINE, SyslogListener
from tests.plan.reconcile_helpers import empty_root
from vmreconcile.cli.main import app
from vmreconcile.formats.cdb import CdbReader

NOW = 1_900_000_000

CONFIG_A = """\
vmailmgr:
  default-msgsize: 1000000
domains:
  mydomain.org:
    base_user: myuser
    wildcard: true
    users:
      me: {password: "$1$abcdefgh$IvHnD.uhYhhpxAiK9IT/C/", aliases: [myself]}
      bob: {password: null, personal: Bob}
"""

# B: a user more, one changed, a domain alias (virtualdomains, rcpthosts), a global option
# changed, a domain option and the authpipe list created, another bindir (.qmail-default).
CONFIG_B = """\
runtime:
  bindir: /opt/vmreconcile/bin
vmailmgr:
  default-msgsize: 2000000
domains:
  mydomain.org:
    base_user: myuser
    wildcard: true
    domain_aliases: [mydomain.net]
    options: {default-hardquota: 50 MB}
    users:
      me: {password: "$1$abcdefgh$IvHnD.uhYhhpxAiK9IT/C/", aliases: [myself]}
      bob: {password: unmanaged, personal: Robert}
      carol: {password: null}
"""


def run(root: Path, *args: str, env: dict | None = None):
    return cli_runner().invoke(app, ["--root", str(root), *args], env=env, catch_exceptions=False)


def managed_files(root: Path) -> dict[str, tuple[bytes, int, int, int]]:
    """Every regular file outside maildirs and vmreconcile's own state: bytes, mode, owner."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("var/lib/vmreconcile", "run/", "dev/")) or "/users/" in f"/{rel}":
            continue
        info = path.lstat()
        if stat.S_ISREG(info.st_mode):
            out[rel] = (path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    return out


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "root"
    home = empty_root(root, uid=1008, gid=1008)
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(CONFIG_A)
    b.write_text(CONFIG_B)
    with SyslogListener(root / "dev" / "log") as syslog:
        yield root, home, a, b, syslog


def history_json(root: Path) -> list[dict]:
    listed = run(root, "history", "--format", "json")
    assert listed.exit_code == 0, listed.output
    return json.loads(listed.stdout)


def test_apply_a_apply_b_rollback_b_rollback_a(site):
    root, home, a, b, syslog = site
    before_a = managed_files(root)
    assert run(root, "apply", str(a), "--yes", "--now", str(NOW)).exit_code == 0
    after_a = managed_files(root)
    applied = run(root, "apply", str(b), "--yes", "--now", str(NOW))
    assert applied.exit_code == 0, applied.output
    assert "Recorded as history entry 2 (`vmreconcile rollback 2` undoes it)." in applied.stdout
    after_b = managed_files(root)
    changed = {k for k in after_a.keys() | after_b.keys() if after_a.get(k) != after_b.get(k)}
    assert {
        "home/myuser/passwd.cdb",
        "home/myuser/.qmail-default",
        "home/myuser/.qmail-default~",
        "home/myuser/.vmailmgr/default-hardquota",
        "var/qmail/control/virtualdomains",
        "var/qmail/control/rcpthosts",
        "etc/vmailmgr/default-msgsize",
        "etc/vmailmgr/vmreconcile-passwd-changeable",
    } <= changed

    undo_b = run(root, "rollback", "2", "--yes")
    assert undo_b.exit_code == 0, undo_b.output
    assert "Rollback complete: 0 recreated, 5 restored, 3 removed." in undo_b.stdout
    assert "control/virtualdomains changed: tell qmail-send to reread it" in undo_b.stdout  # as apply says
    assert managed_files(root) == after_a  # bytes, modes and owners
    assert (home / "users" / "carol" / "new").is_dir()  # a maildir B made is never deleted

    undo_a = run(root, "rollback", "1", "--yes")
    assert undo_a.exit_code == 0, undo_a.output
    assert managed_files(root) == before_a
    assert not (home / "passwd.cdb").exists() and (home / "users" / "me" / "cur").is_dir()

    entries = history_json(root)
    digest_a = hashlib.sha256(a.read_bytes()).hexdigest()
    assert [(e["id"], e["command"], e["rollback_of"], e["outcome"]) for e in entries] == [
        (1, "apply", None, "complete"),
        (2, "apply", None, "complete"),
        (3, "rollback", 2, "complete"),
        (4, "rollback", 1, "complete"),
    ]
    assert entries[0]["config_digest"] == digest_a and entries[0]["config"] == str(a)
    assert entries[1]["summary"] == {"add": 6, "change": 3, "destroy": 0}  # as "Apply complete" said
    assert "Apply complete: 6 added, 3 changed, 0 destroyed." in applied.stdout
    assert all(set(e) >= {"id", "time", "user", "config_digest", "summary"} for e in entries)

    lines = syslog.lines()
    assert len(lines) == 4
    parsed = [LINE.fullmatch(line) for line in lines]
    assert all(parsed), lines
    assert [(m["command"], m["id"]) for m in parsed] == [
        ("apply", "1"),
        ("apply", "2"),
        ("rollback", "3"),
        ("rollback", "4"),
    ]
    assert parsed[0]["details"] == f"config {digest_a[:12]}" and parsed[0]["user"] == entries[0]["user"]
    assert parsed[2]["details"] == "undoes 2" and parsed[3]["details"] == "undoes 1"
    summary = entries[1]["summary"]
    assert (parsed[1]["add"], parsed[1]["change"], parsed[1]["destroy"]) == tuple(
        str(summary[k]) for k in ("add", "change", "destroy")
    )


def test_history_is_root_only_and_keeps_the_previous_bytes(site):
    root, home, a, b, _ = site
    run(root, "apply", str(a), "--yes", "--now", str(NOW))
    table_a = (home / "passwd.cdb").read_bytes()
    run(root, "apply", str(b), "--yes", "--now", str(NOW))
    history = root / "var/lib/vmreconcile/history"
    assert stat.S_IMODE(history.stat().st_mode) == 0o700
    entry = json.loads((history / "000002" / "entry.json").read_text())
    table = next(f for f in entry["files"] if f["kind"] == "table")
    assert table["path"] == "/home/myuser/passwd.cdb" and table["before"]["mode"] == "0600"
    assert (table["before"]["uid"], table["before"]["gid"]) == (1008, 1008)
    assert (history / "000002" / table["before"]["blob"]).read_bytes() == table_a
    assert table["after"]["sha256"] == hashlib.sha256((home / "passwd.cdb").read_bytes()).hexdigest()
    assert sorted(os.listdir(history)) == ["000001", "000002"]
    shown = run(root, "history", "show", "2")
    assert shown.exit_code == 0 and "table /home/myuser/passwd.cdb" in shown.stdout
    assert "~ user mydomain.org/bob" in shown.stdout and "undo:    vmreconcile rollback 2" in shown.stdout
    as_json = json.loads(run(root, "history", "show", "2", "--format", "json").stdout)
    assert as_json["id"] == 2 and as_json["files"] == entry["files"]
    missing = run(root, "history", "show", "9")
    assert missing.exit_code == 1 and missing.stderr == "vmreconcile: no history entry 9 (entries: 1, 2)\n"


def test_a_no_op_apply_records_nothing(site):
    root, _, a, _, syslog = site
    run(root, "apply", str(a), "--yes", "--now", str(NOW))
    again = run(root, "apply", str(a), "--yes", "--now", str(NOW))
    assert again.exit_code == 0 and "Recorded" not in again.stdout
    assert [e["id"] for e in history_json(root)] == [1] and len(syslog.lines()) == 1


def test_rollback_is_refused_when_a_later_apply_changed_the_files(site):
    root, home, a, b, _ = site
    run(root, "apply", str(a), "--yes", "--now", str(NOW))
    run(root, "apply", str(b), "--yes", "--now", str(NOW))
    before = managed_files(root)
    refused = run(root, "rollback", "1", "--yes")
    assert refused.exit_code == 1
    assert "! conflict table /home/myuser/passwd.cdb: changed since by history entry 2 (roll back 2 first)" in (
        refused.stdout
    )
    assert refused.stderr.startswith("vmreconcile: refusing to roll back 1: ")
    assert managed_files(root) == before
    forced = run(root, "rollback", "1", "--yes", "--force")
    assert forced.exit_code == 0, forced.output
    assert not (root / "var/qmail/control/virtualdomains").exists()  # as before A: A created it
    assert not (home / "passwd.cdb").exists()


def test_rollback_is_refused_when_vadduser_changed_the_table(site):
    root, home, a, _, _ = site
    run(root, "apply", str(a), "--yes", "--now", str(NOW))
    table = home / "passwd.cdb"
    table.write_bytes(table.read_bytes())  # same bytes: not a change
    assert "Rollback: 0 to recreate, 1 to restore" in run(root, "rollback", "1").stdout
    data = bytearray(table.read_bytes())
    data[-1] ^= 1  # someone else's write
    table.write_bytes(bytes(data))
    refused = run(root, "rollback", "1", "--yes")
    assert refused.exit_code == 1
    assert "changed since by something else (vadduser, a password change, an edit)" in refused.stdout
    assert table.read_bytes() == bytes(data)


def test_rollback_without_yes_only_plans(site):
    root, home, a, _, syslog = site
    run(root, "apply", str(a), "--yes", "--now", str(NOW))
    before = managed_files(root)
    planned = run(root, "rollback", "1")
    assert planned.exit_code == 0
    assert planned.stdout.endswith("Rollback not carried out: pass --yes to restore these files.\n")
    assert "- remove table /home/myuser/passwd.cdb" in planned.stdout
    assert managed_files(root) == before and len(history_json(root)) == 1 and len(syslog.lines()) == 1


def test_a_rollback_can_be_rolled_back(site):
    root, _, a, b, _ = site
    run(root, "apply", str(a), "--yes", "--now", str(NOW))
    run(root, "apply", str(b), "--yes", "--now", str(NOW))
    after_b = managed_files(root)
    run(root, "rollback", "2", "--yes")
    redo = run(root, "rollback", "3", "--yes")
    assert redo.exit_code == 0, redo.output
    assert managed_files(root) == after_b


def test_retention_comes_from_the_yaml_and_ids_are_never_reused(site, tmp_path):
    root, _, _, _, _ = site
    config = tmp_path / "keep.yaml"
    for n in range(4):
        config.write_text(f"history: {{keep: 2}}\nvmailmgr:\n  default-msgcount: {n + 1}\n")
        assert run(root, "apply", str(config), "--yes").exit_code == 0
    assert [e["id"] for e in history_json(root)] == [3, 4]
    assert sorted(os.listdir(root / "var/lib/vmreconcile/history")) == ["000003", "000004"]


def test_syslog_failure_never_fails_the_apply_and_is_said_once(tmp_path):
    root = tmp_path / "root"
    empty_root(root, uid=1008, gid=1008)
    config = tmp_path / "a.yaml"
    config.write_text(CONFIG_A)
    result = run(root, "apply", str(config), "--yes", "--now", str(NOW))
    assert result.exit_code == 0
    assert result.stderr == (
        f"vmreconcile: the audit line was not sent to syslog ({root}/dev/log: No such file or directory); "
        "the history entry is complete\n"
    )
    assert history_json(root)[0]["outcome"] == "complete"


def test_the_user_is_sudo_user_when_there_is_one(site):
    root, _, a, _, syslog = site
    run(root, "apply", str(a), "--yes", "--now", str(NOW), env={"SUDO_USER": "alice"})
    assert history_json(root)[0]["user"] == "alice"
    assert " by alice: " in syslog.lines()[0]


def test_the_git_commit_of_the_configuration_is_recorded_and_a_modified_file_says_dirty(site, tmp_path):
    root, _, _, _, syslog = site
    repo = tmp_path / "repo"
    (repo / "config").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "config" / "mail.yaml").write_text(CONFIG_A)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "A")
    head = git(repo, "rev-parse", "HEAD")
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path}/hook-ran\n")
    hook.chmod(0o755)
    assert run(root, "apply", str(repo / "config"), "--yes", "--now", str(NOW)).exit_code == 0
    (repo / "config" / "mail.yaml").write_text(CONFIG_B)
    assert run(root, "apply", str(repo / "config"), "--yes", "--now", str(NOW)).exit_code == 0
    first, second = history_json(root)
    assert (first["commit"], first["commit_dirty"]) == (head, False)
    assert (second["commit"], second["commit_dirty"]) == (head, True)
    listing = f"{hashlib.sha256(CONFIG_B.encode()).hexdigest()}  mail.yaml\n"
    assert second["config_digest"] == hashlib.sha256(listing.encode()).hexdigest()  # sha256sum *.yaml | sha256sum
    lines = syslog.lines()
    assert lines[0].endswith(f"(config {first['config_digest'][:12]}, commit {head})")
    assert lines[1].endswith(f"(config {second['config_digest'][:12]}, commit {head}-dirty)")
    assert not (tmp_path / "hook-ran").exists()


def test_a_missing_git_never_fails_the_apply(site, tmp_path, monkeypatch):
    root, _, _, _, _ = site
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "mail.yaml").write_text(CONFIG_A)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert run(root, "apply", str(repo / "mail.yaml"), "--yes", "--now", str(NOW)).exit_code == 0
    assert history_json(root)[0]["commit"] is None


def test_keys_of_the_table_after_each_step(site):
    """The table really is the one of each state (not just equal digests of something else)."""
    root, home, a, b, _ = site
    run(root, "apply", str(a), "--yes", "--now", str(NOW))
    run(root, "apply", str(b), "--yes", "--now", str(NOW))
    keys = [k for k, _ in CdbReader((home / "passwd.cdb").read_bytes()).items()]
    assert b"carol" in keys
    run(root, "rollback", "2", "--yes")
    keys = [k for k, _ in CdbReader((home / "passwd.cdb").read_bytes()).items()]
    assert keys == [b"mailer-daemon", b"postmaster", b"root", b"me", b"myself", b"bob"]


def test_a_symlink_planted_in_a_home_stops_the_rollback_with_one_line(site, tmp_path):
    root, home, a, b, _ = site
    run(root, "apply", str(a), "--yes", "--now", str(NOW))
    run(root, "apply", str(b), "--yes", "--now", str(NOW))
    elsewhere = tmp_path / "elsewhere"
    (home / ".vmailmgr").rename(elsewhere)
    (home / ".vmailmgr").symlink_to(elsewhere)
    result = run(root, "rollback", "2", "--yes")
    assert result.exit_code == 1
    assert result.stderr == (
        "vmreconcile: rollback 2: ~myuser/.vmailmgr: is a symbolic link or not a directory; refusing to follow it\n"
    )
    assert (elsewhere / "default-hardquota").read_text() == "50000000\n"


def test_the_byte_budget_bounds_the_history_directory(site, monkeypatch):
    from vmreconcile.history import store

    root, home, a, b, _ = site
    monkeypatch.setattr(store, "MAX_BYTES", 1)  # no copy fits: every entry alone is over it
    assert run(root, "apply", str(a), "--yes", "--now", str(NOW)).exit_code == 0
    table_a = (home / "passwd.cdb").stat().st_size
    applied = run(root, "apply", str(b), "--yes", "--now", str(NOW))
    assert applied.exit_code == 0, applied.output
    assert (
        f"vmreconcile: history entry 2 keeps no copy of /home/myuser/passwd.cdb ({table_a} bytes, over the "
        "history's budget of 1 bytes); rollback cannot restore it\n"
    ) in applied.stderr
    history = root / "var/lib/vmreconcile/history"
    assert sorted(os.listdir(history)) == ["000002"]  # entry 1 pruned, the one just written kept
    assert not [n for n in os.listdir(history / "000002") if n.startswith("before-")]
    shown = run(root, "history", "show", "2")
    assert "    before: no copy kept (" in shown.stdout and "over the history's budget of 1 bytes)" in shown.stdout
    undo = run(root, "rollback", "2", "--yes")
    assert "table /home/myuser/passwd.cdb: no copy was kept (" in undo.stdout
    assert "over the history's budget of 1 bytes); not restored" in undo.stdout


def test_history_and_rollback_print_what_tenants_control_escaped(site):
    root, home, a, _, syslog = site
    sudo_user = "al\x1b[2Jice\nforged"
    assert run(root, "apply", str(a), "--yes", "--now", str(NOW), env={"SUDO_USER": sudo_user}).exit_code == 0
    (audited,) = syslog.lines()  # one datagram, one line: the newline cannot forge a second record
    assert "apply 1 by al\\x1b[2Jice\\nforged: +" in audited and "\n" not in audited and "\x1b" not in audited
    from vmreconcile.history.files import MISSING, FileRef, FileState
    from vmreconcile.history.store import Store

    store = Store(root / "var/lib/vmreconcile/history")
    evil = "/home/myuser/\x1b]0;title\x07users/\rx"
    ref = FileRef(kind="option", path=evil, base_user="myuser", relative="\x1b]0;title\x07users/\rx")
    pending = store.begin(
        {"command": "apply", "user": "root", "changes": ["- user mydomain.org/\x1b[31mevil\x9b"], "summary": {}},
        [(ref, FileState(type="symlink", link="/tmp/\x1b[1mlink"))],
    )
    pending.commit(outcome="failed", afters=[MISSING], errors=["\x1b[2Jbad\r"])
    listed = run(root, "history")
    assert listed.exit_code == 0, listed.output
    assert "al\\x1b[2Jice\\nforged" in listed.stdout
    shown = run(root, "history", "show", "2")
    assert shown.exit_code == 0, shown.output
    for raw in (listed.stdout, shown.stdout):
        assert not any(ch in raw for ch in "\x1b\r\x07\x9b") and raw.count("\n") == len(raw.splitlines())
    assert "  - user mydomain.org/\\x1b[31mevil\\x9b\n" in shown.stdout
    assert "  option /home/myuser/\\x1b]0;title\\x07users/\\rx\n" in shown.stdout
    assert "    before: symlink to /tmp/\\x1b[1mlink\n" in shown.stdout and "  \\x1b[2Jbad\\r\n" in shown.stdout
    first = run(root, "history", "show", "1")
    assert "by al\\x1b[2Jice\\nforged (uid" in first.stdout and "\x1b" not in first.stdout
    as_json = run(root, "history", "show", "2", "--format", "json").stdout
    assert as_json.isascii() and json.loads(as_json)["errors"] == ["\x1b[2Jbad\r"]
    undo = run(root, "rollback", "2")
    assert "\x1b" not in undo.stdout and "option /home/myuser/\\x1b]0;title\\x07users/\\rx" in undo.stdout


def test_a_symlinked_state_directory_is_refused_before_anything_is_written(site, tmp_path):
    root, _, a, _, syslog = site
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    state = root / "var/lib/vmreconcile"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.symlink_to(elsewhere)
    before = managed_files(root)
    refused = run(root, "apply", str(a), "--yes", "--now", str(NOW))
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"vmreconcile: {state}: is a symbolic link; it must be a real directory; refusing to keep the history there\n"
    )
    assert managed_files(root) == before and os.listdir(elsewhere) == [] and syslog.lines() == []
    listed = run(root, "history")
    assert listed.exit_code == 1 and "is a symbolic link" in listed.stderr
    saved = run(root, "plan", str(a), "--out", str(tmp_path / "x.plan"))
    assert saved.exit_code == 1 and saved.stderr.endswith("refusing to keep the plan key there\n")
    assert os.listdir(elsewhere) == [] and not (tmp_path / "x.plan").exists()


def test_a_state_directory_others_can_write_is_refused_and_a_readable_one_tightened(site, tmp_path):
    root, _, a, _, _ = site
    state = root / "var/lib/vmreconcile"
    state.mkdir(parents=True)
    state.chmod(0o775)
    refused = run(root, "apply", str(a), "--yes", "--now", str(NOW))
    assert refused.exit_code == 1
    assert f"{state}: must be a directory owned by uid {os.geteuid()} that nobody else can write" in refused.stderr
    assert "(it is uid" in refused.stderr and "mode 0775)" in refused.stderr and not (state / "history").exists()
    state.chmod(0o755)  # as an installer may make it: tightened, then used
    assert run(root, "apply", str(a), "--yes", "--now", str(NOW)).exit_code == 0
    assert stat.S_IMODE(state.stat().st_mode) == 0o700 and (state / "history" / "000001").is_dir()


def test_a_fresh_state_directory_is_made_owner_only(site, tmp_path):
    root, _, a, _, _ = site
    assert run(root, "plan", str(a), "--out", str(tmp_path / "a.plan")).exit_code == 0
    state = root / "var/lib/vmreconcile"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700 and state.stat().st_uid == os.geteuid()
    assert os.listdir(state) == ["plan.key"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root; CI runs as root")
def test_a_state_directory_of_another_user_is_refused(site):
    root, _, a, _, _ = site
    state = root / "var/lib/vmreconcile"
    state.mkdir(parents=True, mode=0o700)
    os.chown(state, 1234, 1234)
    refused = run(root, "apply", str(a), "--yes", "--now", str(NOW))
    assert (
        refused.exit_code == 1 and "(it is uid 1234, mode 0700); refusing to keep the history there" in refused.stderr
    )
    assert os.listdir(state) == []
