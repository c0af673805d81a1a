"""Adopting a live host through the CLI: `export` then `plan` is empty, or export names what is lost.

Every fixture step is adopted as it is; then hosts changed afterwards by VMailMgr's own tools
(vpasswd, vchattr, vaddalias, vchforwards, vadduser), each made with the project's own table
writer exactly as that tool changes the table ([compat: admin-tools], [compat: entry-shapes]),
are adopted again. What YAML cannot say (a non-standard ``.qmail-default``, bytes that are
not UTF-8, an authpipe line naming no entry, a deleted postmaster alias) makes export exit 1
naming it, unless ``--lossy``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.clirunner import cli_runner
from tests.conftest import STEPS, build_step_root
from vmreconcile.cli.main import app
from vmreconcile.formats.cdb import CdbReader, build_cdb
from vmreconcile.formats.config import PASSWD_CHANGEABLE
from vmreconcile.formats.hashing import hash_password
from vmreconcile.formats.vpwentry import decode_record, encode_record, user_key
from vmreconcile.host import Host
from vmreconcile.live import read_live_state
from vmreconcile.model import VirtualUser
from vmreconcile.newentry import DomainDefaults

NOW = 1_900_000_000


def run(root: Path, *args: str):
    return cli_runner().invoke(app, ["--root", str(root), *args], catch_exceptions=False)


def export_then_plan(root: Path, tmp_path: Path, *export_args: str):
    """(export result, plan --detailed-exitcode result) for ``root``; the YAML in tmp_path."""
    exported = run(root, "export", *export_args)
    config = tmp_path / "adopted.yaml"
    config.write_text(exported.stdout)
    planned = run(root, "plan", str(config), "--detailed-exitcode", "--now", str(NOW)) if exported.stdout else None
    return exported, planned


@pytest.mark.parametrize("step", STEPS)
def test_adopting_every_fixture_step_plans_no_change(step, tmp_path):
    root = tmp_path / "root"
    build_step_root(step, root)
    exported, planned = export_then_plan(root, tmp_path)
    assert exported.exit_code == 0 and exported.stderr == "", exported.stderr
    assert planned.exit_code == 0, planned.stdout
    assert planned.stdout.startswith("No changes.")


# --- the tools of VMailMgr, as they change a table (through our own table writer) ------------


def read_table(home: Path) -> list[VirtualUser]:
    return [decode_record(k, v) for k, v in CdbReader((home / "passwd.cdb").read_bytes()).items()]


def write_table(home: Path, users: list[VirtualUser]) -> None:
    """What every VMailMgr tool does: the whole table rebuilt, records in table order."""
    (home / "passwd.cdb").write_bytes(build_cdb((user_key(u.name), encode_record(u)) for u in users))
    (home / "passwd.cdb").chmod(0o600)


def change_entry(home: Path, name: str, **fields: object) -> None:
    """vchattr / vpasswd / vchforwards: the entry changed in place, its position kept."""
    users = read_table(home)
    assert name in {u.name for u in users}
    write_table(home, [u.with_changes(**fields) if u.name == name else u for u in users])


def defaults(root: Path) -> DomainDefaults:
    state = read_live_state(Host(root))
    return DomainDefaults(state.domains[0].options, state.options)


def make_dir(home: Path, directory: str, maildir: bool) -> None:
    path = home / directory
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if maildir:
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(mode=0o755, exist_ok=True)


def vpasswd(root: Path, home: Path) -> None:
    change_entry(home, "alice", password=hash_password("alice-pass-3", "md5-crypt"))


def vchattr(root: Path, home: Path) -> None:
    change_entry(home, "bob", hard_quota=5_000_000, soft_quota=4_000_000, personal="Robert")
    change_entry(home, "me", mailbox_enabled=False, expires=4_102_444_800, message_count_limit=None)


def vaddalias(root: Path, home: Path) -> None:
    """``vaddalias Help.Desk alice bob@x.example`` = ``vadduser -D -P -f ... Help.Desk``."""
    entry = defaults(root).new_alias("Help.Desk", NOW).with_changes(forwards=("alice", "bob@x.example"))
    make_dir(home, entry.directory, maildir=False)  # vadduser makes the directory even for an alias
    write_table(home, [*read_table(home), entry])


def vchforwards(root: Path, home: Path) -> None:
    change_entry(home, "sales", forwards=("me", "ops@elsewhere.example"))


def vadduser_with_alias(root: Path, home: Path) -> None:
    """``vadduser -p Zed Zed.Ex zx``: a user, then its extra alias in the same second."""
    d = defaults(root)
    user = d.new_user("Zed.Ex", NOW).with_changes(password=hash_password("zed-pw", "md5-crypt"), personal="Zed")
    alias = d.vadduser_alias("zx", user.name, NOW)
    make_dir(home, user.directory, maildir=True)
    make_dir(home, alias.directory, maildir=False)
    write_table(home, [*read_table(home), user, alias])


TOOLS = {
    "vpasswd": vpasswd,
    "vchattr": vchattr,
    "vaddalias": vaddalias,
    "vchforwards": vchforwards,
    "vadduser": vadduser_with_alias,
}


@pytest.mark.parametrize("tool", [*TOOLS, "all"])
def test_a_host_changed_by_vmailmgrs_tools_after_adoption_is_adopted_again_exactly(tool, tmp_path):
    root = tmp_path / "root"
    home = build_step_root("11-after-deliveries", root)
    first, planned = export_then_plan(root, tmp_path)
    assert first.exit_code == 0 and planned.exit_code == 0
    applied = run(root, "apply", str(tmp_path / "adopted.yaml"), "--yes", "--now", str(NOW))
    assert applied.exit_code == 0, applied.output
    for name, change in TOOLS.items():
        if tool in (name, "all"):
            change(root, home)
    exported, planned = export_then_plan(root, tmp_path)
    assert exported.exit_code == 0, exported.stderr
    assert exported.stdout != first.stdout  # the tool's change is in the new export
    assert planned.exit_code == 0, planned.stdout
    if tool in ("vaddalias", "all"):
        assert "      Help.Desk:\n        forwards: [alice, bob@x.example]\n" in exported.stdout


def test_unmanaged_passwords_are_exported_as_unmanaged(tmp_path):
    root = tmp_path / "root"
    build_step_root("11-after-deliveries", root)
    changeable = root / "etc" / "vmailmgr" / PASSWD_CHANGEABLE
    changeable.write_text("vbase1/bob\nvbase1/alice\nvbase1/sales\n")  # any order
    exported, planned = export_then_plan(root, tmp_path)
    assert exported.exit_code == 0, exported.stderr
    assert "      alice:\n        password: unmanaged\n" in exported.stdout
    assert "      sales:\n        password: unmanaged\n" in exported.stdout
    assert "$1$" in exported.stdout.split("      me:\n", 1)[1].split("\n", 2)[0]  # others keep their hash
    assert planned.exit_code == 0, planned.stdout
    # a password change through the authpipe after adoption is not drift
    change_entry(root / "home" / "vbase1", "alice", password=hash_password("by-courier", "yescrypt"))
    again = run(root, "plan", str(tmp_path / "adopted.yaml"), "--detailed-exitcode", "--now", str(NOW))
    assert again.exit_code == 0, again.stdout
    # and without the file the same YAML would change it: the test can fail
    changeable.unlink()
    again = run(root, "plan", str(tmp_path / "adopted.yaml"), "--detailed-exitcode", "--now", str(NOW))
    assert again.exit_code == 2 and f"option/{PASSWD_CHANGEABLE}" in again.stdout


def test_comments_in_the_changeable_list_are_what_the_authpipe_skips_too(tmp_path):
    """One reading of the file for plan, export and the authpipe: comments and blanks are not entries."""
    from vmreconcile.host import Host
    from vmreconcile.runtime.login.core import passwd_changeable

    root = tmp_path / "root"
    build_step_root("11-after-deliveries", root)
    changeable = root / "etc" / "vmailmgr" / PASSWD_CHANGEABLE
    changeable.write_text("# users who set their own password\n\n  vbase1/alice  \n#vbase1/bob\n")
    assert passwd_changeable(Host(root)) == {("vbase1", "alice")}
    exported, planned = export_then_plan(root, tmp_path)
    assert exported.exit_code == 0, exported.stderr  # nothing lost: a comment is no entry
    assert "      alice:\n        password: unmanaged\n" in exported.stdout
    assert "      bob:\n        password: unmanaged\n" not in exported.stdout
    assert planned.exit_code == 0, planned.stdout


def test_every_option_is_exported(tmp_path):
    root = tmp_path / "root"
    home = build_step_root("10-catchall", root)
    (root / "etc" / "vmailmgr" / "default-msgsize").write_text("1000000\n")
    (root / "etc" / "vmailmgr" / "postmaster-aliases").write_text("root\npostmaster\nmailer-daemon\n")
    (root / "etc" / "vmailmgr" / "separators").write_text("@:%\n")
    (home / ".vmailmgr").mkdir()
    (home / ".vmailmgr" / "default-hardquota").write_text("-\n")
    (home / ".vmailmgr" / "autoresponse-file").write_text("away.txt\n")
    exported, planned = export_then_plan(root, tmp_path)
    assert exported.exit_code == 0, exported.stderr
    assert "  default-msgsize: 1000000\n" in exported.stdout and 'separators: "@:%"' in exported.stdout
    assert '    options:\n      autoresponse-file: away.txt\n      default-hardquota: "-"\n' in exported.stdout
    assert planned.exit_code == 0, planned.stdout


# --- what YAML cannot say ------------------------------------------------------------------


def assert_refused_then_lossy(root: Path, tmp_path: Path, *named: str) -> str:
    refused = run(root, "export")
    assert refused.exit_code == 1 and refused.stdout == ""
    for part in named:
        assert part in refused.stderr, refused.stderr
    assert refused.stderr.splitlines()[-1].startswith("vmreconcile: the export cannot carry")
    out = tmp_path / "lossy.yaml"
    lossy = run(root, "export", "--lossy", "-o", str(out))
    assert lossy.exit_code == 0 and lossy.stderr == refused.stderr.rsplit("\n", 2)[0] + "\n"
    text = out.read_text()
    for part in named:
        assert part in text  # the YAML names what it left out, too
    return text


def test_a_non_standard_qmail_default_is_named_and_refused(tmp_path):
    root = tmp_path / "root"
    home = build_step_root("10-catchall", root)
    (home / ".qmail-default").write_text("|preline /usr/local/bin/vdeliver\n")
    assert_refused_then_lossy(root, tmp_path, ".qmail-default", "|preline /usr/local/bin/vdeliver")


def test_a_name_that_is_not_utf8_is_named_left_out_and_left_alone(tmp_path):
    root = tmp_path / "root"
    home = build_step_root("10-catchall", root)
    latin1 = VirtualUser(b"caf\xe9".decode("utf-8", "surrogateescape"), directory="./users/caf", created=NOW)
    make_dir(home, latin1.directory, maildir=True)
    write_table(home, [*read_table(home), latin1])
    assert_refused_then_lossy(root, tmp_path, "mydomain.org/caf\\xe9")
    planned = run(root, "plan", str(tmp_path / "lossy.yaml"), "--detailed-exitcode", "--now", str(NOW))
    assert planned.exit_code == 0, planned.stdout  # the entry stays as it is (no prune)


@pytest.mark.parametrize("brk", ["\n", "\r", "\x85", "\u2028", "\u2029"])
def test_a_name_that_breaks_the_lost_comment_cannot_write_yaml(tmp_path, brk):
    """A tenant's own entry named ``\\xff<line break>qmail: {reload: ...}`` must not become a
    top-level key of the export (which would make apply run the command as root)."""
    root = tmp_path / "root"
    home = build_step_root("10-catchall", root)
    evil = VirtualUser(
        (b"\xff" + brk.encode() + b'qmail: {reload: "sh -c id"}' + brk.encode() + b"#").decode(
            "utf-8", "surrogateescape"
        ),
        directory="./users/x",
        created=NOW,
    )
    write_table(home, [*read_table(home), evil])
    text = assert_refused_then_lossy(root, tmp_path, "mydomain.org/\\xff")
    assert not [line for line in text.splitlines() if "reload" in line and not line.startswith("# lost: ")], text
    assert brk not in run(root, "export").stderr.replace("\n", "")  # one escaped line per lost part
    from vmreconcile.desired.load import load_spec

    assert load_spec(tmp_path / "lossy.yaml").reload_command is None


def test_a_personal_field_that_is_not_utf8_is_named_and_kept_live(tmp_path):
    root = tmp_path / "root"
    home = build_step_root("10-catchall", root)
    change_entry(home, "bob", personal=b"M\xfcller".decode("utf-8", "surrogateescape"))
    assert_refused_then_lossy(root, tmp_path, "mydomain.org/bob: personal")
    planned = run(root, "plan", str(tmp_path / "lossy.yaml"), "--detailed-exitcode", "--now", str(NOW))
    assert planned.exit_code == 0, planned.stdout


def test_an_authpipe_line_naming_no_entry_is_lost(tmp_path):
    root = tmp_path / "root"
    build_step_root("10-catchall", root)
    (root / "etc" / "vmailmgr" / PASSWD_CHANGEABLE).write_text("vbase1/alice\nvbase1/ghost\n")
    assert_refused_then_lossy(root, tmp_path, "'vbase1/ghost'")


def test_a_deleted_postmaster_alias_is_caught_by_planning_the_export(tmp_path):
    """`vdeluser root`: the planner recreates vsetup's aliases, which YAML cannot prevent."""
    root = tmp_path / "root"
    home = build_step_root("10-catchall", root)
    write_table(home, [u for u in read_table(home) if u.name != "root"])
    assert_refused_then_lossy(root, tmp_path, "still plans: create user mydomain.org/root")


def test_export_with_domain_checks_only_that_domain(tmp_path):
    root = tmp_path / "root"
    build_step_root("10-catchall", root)
    (root / "etc" / "vmailmgr" / PASSWD_CHANGEABLE).write_text("vother/x\n")  # another domain's line
    exported = run(root, "export", "--domain", "mydomain.org")
    assert exported.exit_code == 0 and exported.stderr == ""
    assert os.path.exists(root / "etc" / "vmailmgr" / PASSWD_CHANGEABLE)
