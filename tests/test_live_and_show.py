"""The live reader and ``show``: a root built from each fixture step shows what listvdomain showed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jsonschema
import pytest

from tests.conftest import REPO, STEPS, build_step_root, step_dir
from vmreconcile.host import Host
from vmreconcile.live import read_live_state
from vmreconcile.showjson import state_from_json, state_to_json

SHOW_SCHEMA = json.loads((REPO / "schemas" / "show.schema.json").read_text())


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vmreconcile", *args], capture_output=True, text=True, env=env)


def listvdomain_users(step: str) -> list[str]:
    lines = (step_dir(step) / "listvdomain.txt").read_text().splitlines()
    assert lines[0] == "User Mailbox Aliases"
    return [line for line in lines[1:] if line != "exit=0"]  # step 12's log also recorded the exit status


@pytest.mark.parametrize("step", STEPS)
def test_show_json_of_a_fixture_root_has_the_users_of_listvdomain(step, tmp_path):
    build_step_root(step, tmp_path)
    result = run_cli("--root", str(tmp_path), "show", "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, SHOW_SCHEMA)
    (domain,) = doc["domains"]
    assert (domain["name"], domain["base_user"], domain["wildcard"]) == ("mydomain.org", "vbase1", True)
    shown = []
    for user in domain["users"]:
        line = (
            user["name"]
            + (" Yes" if user["has_mailbox"] else " No")
            + ("" if user["mailbox_enabled"] else "(disabled)")
        )
        shown.append("".join([line, *(f" {f}" for f in user["forwards"])]))
    assert shown == listvdomain_users(step)
    assert set(doc["domains"][0]["users"][0]) == {
        "name",
        "password",
        "directory",
        "has_mailbox",
        "mailbox_enabled",
        "forwards",
        "personal",
        "hard_quota",
        "soft_quota",
        "message_size_limit",
        "message_count_limit",
        "created",
        "expires",
    }


@pytest.mark.parametrize("step", ["03-vaddalias", "11-after-deliveries"])
def test_show_text_lists_users_like_listvdomain(step, tmp_path):
    build_step_root(step, tmp_path)
    result = run_cli("--root", str(tmp_path), "show")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# mydomain.org, .mydomain.org (base user vbase1")
    assert lines[1:] == ["User Mailbox Aliases", *listvdomain_users(step)]


def test_grace_has_her_limits_and_expiry(tmp_path):
    build_step_root("05-vchattr", tmp_path)
    state = read_live_state(Host(tmp_path))
    grace = state.domains[0].user("grace")
    assert (grace.hard_quota, grace.soft_quota, grace.message_size_limit, grace.message_count_limit) == (
        2000000,
        1500000,
        100000,
        500,
    )
    assert grace.expires == 1795632716
    assert state.domains[0].user("Henry.Ford").directory == "./users/Henry:Ford"
    assert "users/postmaster" in state.domains[0].maildirs
    assert state.domains[0].qmail_default == "|/usr/local/bin/vdeliver\n"
    assert state.options == {"qmail-root": "/var/qmail"}


def test_json_round_trips_and_redaction_hides_hashes(tmp_path):
    build_step_root("11-after-deliveries", tmp_path)
    state = read_live_state(Host(tmp_path))
    assert state_from_json(json.loads(json.dumps(state_to_json(state)))) == state
    redacted = state_to_json(state, redact=True)
    jsonschema.validate(redacted, SHOW_SCHEMA)
    passwords = {u["name"]: u["password"] for u in redacted["domains"][0]["users"]}
    assert passwords["root"] == "*"
    assert passwords["me"].startswith("sha256:") and "$1$" not in json.dumps(redacted)


def test_domain_filter(tmp_path):
    build_step_root("02-vadduser", tmp_path)
    assert json.loads(run_cli("--root", str(tmp_path), "show", "-f", "json", "--domain", "mydomain.org").stdout)[
        "domains"
    ]
    result = run_cli("--root", str(tmp_path), "show", "--domain", "other.org")
    assert result.returncode == 1 and "no live domain 'other.org'" in result.stderr


def test_root_can_come_from_the_environment(tmp_path):
    import os

    build_step_root("01-vsetup", tmp_path)
    result = run_cli("show", env={**os.environ, "VMRECONCILE_ROOT": str(tmp_path)})
    assert result.returncode == 0 and "mailer-daemon Yes postmaster@" in result.stdout


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_missing_base_user_is_a_one_line_error(tmp_path):
    build_step_root("01-vsetup", tmp_path)
    (tmp_path / "var/qmail/control/virtualdomains").write_text("mydomain.org:vbase1\nother.org:ghost\n")
    message = one_line_error(run_cli("--root", str(tmp_path), "show"))
    assert "base user 'ghost' does not exist" in message


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda data: data[:1000], "truncated cdb"),
        (lambda data: data[:-5], "corrupt cdb"),
        (lambda data: b"", "empty file"),
        (
            lambda data: data.replace(b"\x02\x0a\x01\x08\x01\x00*", b"\x03\x0a\x01\x08\x01\x00*", 1),
            "unknown record format version 0x03",
        ),
        (
            lambda data: data.replace(b"\x02\x0a\x01\x08\x01\x00*", b"\x02\x0c\x01\x08\x01\x00*", 1),
            "unknown flag number 12",
        ),
    ],
)
def test_corrupt_tables_are_one_line_errors(tmp_path, damage, expected):
    home = build_step_root("03-vaddalias", tmp_path)
    table = home / "passwd.cdb"
    table.write_bytes(damage(table.read_bytes()))
    assert expected in one_line_error(run_cli("--root", str(tmp_path), "show"))


def test_a_symlinked_table_is_refused_not_followed(tmp_path):
    home = build_step_root("03-vaddalias", tmp_path)
    (home / "passwd.cdb").rename(tmp_path / "elsewhere.cdb")
    (home / "passwd.cdb").symlink_to(tmp_path / "elsewhere.cdb")
    assert "symbolic link" in one_line_error(run_cli("--root", str(tmp_path), "show"))


def test_an_empty_root_shows_no_domains(tmp_path):
    result = run_cli("--root", str(tmp_path), "show", "-f", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["domains"] == []


@pytest.mark.parametrize("value", ["../other/passwd", "/etc/passwd", "sub/passwd", ".."])
def test_a_password_file_outside_the_home_is_refused(tmp_path, value):
    """A base user controls ~/.vmailmgr/password-file; root must not read another table through it."""
    home = build_step_root("03-vaddalias", tmp_path)
    (home / ".vmailmgr").mkdir()
    (home / ".vmailmgr" / "password-file").write_text(value + "\n")
    assert "must be a plain file name" in one_line_error(run_cli("--root", str(tmp_path), "show"))


@pytest.mark.parametrize("plant", ["fifo", "symlink"])
def test_a_fifo_or_symlink_in_vmailmgr_is_refused_by_name_never_read(tmp_path, plant):
    """Option files in a home are read non-blocking, regular files only, symlinks not followed:
    a planted one is an error naming the file (a FIFO does not hang, a link is not followed)."""
    home = build_step_root("03-vaddalias", tmp_path)
    (home / ".vmailmgr").mkdir()
    (tmp_path / "elsewhere").write_text("4\n")
    if plant == "fifo":
        os.mkfifo(home / ".vmailmgr" / "password-file")
        expected = f"{home}/.vmailmgr/password-file: not a regular file (a FIFO)"
    else:
        (home / ".vmailmgr" / "user-dir-bits").symlink_to(tmp_path / "elsewhere")
        expected = f"{home}/.vmailmgr/user-dir-bits: is a symbolic link"
    result = subprocess.run(
        [sys.executable, "-m", "vmreconcile", "--root", str(tmp_path), "show", "-f", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert expected in one_line_error(result)
    assert "domain mydomain.org" in result.stderr


def test_a_symlinked_vmailmgr_directory_is_refused_not_followed(tmp_path):
    home = build_step_root("03-vaddalias", tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "password-file").write_text("nosuch\n")
    (home / ".vmailmgr").symlink_to(other)
    message = one_line_error(run_cli("--root", str(tmp_path), "show", "-f", "json"))
    assert f"{home}/.vmailmgr: is a symbolic link or not a directory; refusing to follow it" in message


def test_plaintext_equivalent_hashes_are_redacted_without_a_digest(tmp_path):
    """dave's `$0$dave-plain` is the password itself: its sha256 would be a dictionary lookup."""
    import hashlib

    build_step_root("11-after-deliveries", tmp_path)
    snapshot = run_cli("--root", str(tmp_path), "show", "-f", "json", "--redact")
    doc = json.loads(snapshot.stdout)
    passwords = {u["name"]: u["password"] for u in doc["domains"][0]["users"]}
    assert passwords["dave"] == "unverifiable:null-crypt"
    assert hashlib.sha256(b"$0$dave-plain").hexdigest() not in snapshot.stdout
    assert passwords["carol"].startswith("sha256:")

    exported = run_cli("--root", str(tmp_path), "export")
    assert exported.returncode == 0, exported.stderr
    (tmp_path / "mail.yaml").write_text(exported.stdout)
    (tmp_path / "snapshot.json").write_text(snapshot.stdout)
    plan = run_cli(
        "plan", str(tmp_path / "mail.yaml"), "--state", str(tmp_path / "snapshot.json"), "--detailed-exitcode"
    )
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "mydomain.org/dave: live password is null-crypt" in plan.stdout
    assert "dave-plain" not in plan.stdout
