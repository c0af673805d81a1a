"""vauthenticate [compat: courier] through a real launcher, as root, against the step-11 fixture table."""

from __future__ import annotations

import os

import pytest
from loginkit import create_world, destroy_world, run_fd3

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="vauthenticate must start as root (setuid); CI runs as root"),
]


@pytest.fixture(scope="module")
def world():
    made = create_world(programs=("vauthenticate",))
    yield made
    destroy_world(made)


def run(world, data: bytes):
    return run_fd3([world.launcher("vauthenticate")], None, stdin=data)


def account(world, maildir: str, vuser: str) -> str:
    return f"UID={world.uid}\nGID={world.gid}\nUSER={world.name}\nHOME={world.home}\nMAILDIR={maildir}\nVUSER={vuser}\n"


@pytest.mark.parametrize(
    ("data", "maildir", "vuser"),
    [
        (b"mydomain.org\0me\0secret", "./users/me", "me"),
        (b"mydomain.org\0me\0secret\0", "./users/me", "me"),
        (b"MyDomain.ORG\0me\0secret", "./users/me", "me"),
        (b"mail.mydomain.org\0alice\0alice-pass-2", "./users/alice", "alice"),
        (b"mydomain.org\0Henry.Ford\0henry-pw", "./users/Henry:Ford", "Henry.Ford"),
        (b"mydomain.org\0bob\0b0b p@ss:w0rd", "./users/bob", "bob"),
        (b"mydomain.org\0frank\0frank-pw", "./users/frank", "frank"),  # mailbox disabled: not a block
        (b"\0me@mydomain.org\0secret", "./users/me", "me"),  # no domain field: split the name
    ],
)
def test_good_login_prints_account(world, data, maildir, vuser):
    result = run(world, data)
    assert (result.code, result.err) == (0, "")
    assert result.out == account(world, maildir, vuser)


@pytest.mark.parametrize(
    "data",
    [
        b"mydomain.org\0me\0wrong",
        b"mydomain.org\0alice\0alice-pass-1",
        b"mydomain.org\0nosuchuser\0secret",
        b"mydomain.org\0info\0*",  # alias without a mailbox
        b"mydomain.org\0root\0*",  # vsetup alias with a mailbox, password '*'
        b"mydomain.org\0nopass\0*",
        b"mydomain.org\0dave\0dave-plain",  # expired
        b"mydomain.org\0grace\0grace-pw",  # deleted
        b"unknown.example\0me\0secret",
        b"localhost\0VBASE\0base-pass-1",  # a system account: vauthenticate is virtual-only
    ],
)
def test_bad_login_exits_1(world, data):
    data = data.replace(b"VBASE", world.name.encode())
    world.set_system_logins(True)
    try:
        result = run(world, data)
    finally:
        world.set_system_logins(None)
    assert (result.code, result.out) == (1, "")


@pytest.mark.parametrize(
    "data",
    [
        b"mydomain.org\0me\0",  # empty password counts as missing
        b"mydomain.org\0me",
        b"mydomain.org",
        b"",
        b"mydomain.org\0\0secret",
        b"mydomain.org\0me\0" + b"x" * (512 - len(b"mydomain.org\0me\0")),  # 512 bytes
    ],
)
def test_bad_data_exits_2(world, data):
    result = run(world, data)
    assert (result.code, result.out) == (2, "")


def test_511_bytes_is_accepted(world):
    data = b"mydomain.org\0me\0secret\0"
    data += b"x" * (511 - len(data))
    result = run(world, data)
    assert result.code == 0
    assert result.out == account(world, "./users/me", "me")


def test_does_not_lowercase_the_user(world):
    result = run(world, b"mydomain.org\0ME\0secret")
    assert result.code == 0
    assert result.out.endswith("VUSER=ME\n")


def test_a_newline_in_a_stored_directory_cannot_forge_answer_lines(world):
    """The base user controls the table; a directory like "x\\nUID=0" must not become a UID= line."""
    from vmreconcile.formats.cdb import CdbReader, build_cdb
    from vmreconcile.formats.vpwentry import encode_record
    from vmreconcile.model import VirtualUser

    table = world.home / "passwd.cdb"
    original = table.read_bytes()
    evil = VirtualUser("evil", "$0$pw", "./users/evil\nUID=0", created=1)
    try:
        table.write_bytes(build_cdb([*CdbReader(original).items(), (b"evil", encode_record(evil))]))
        result = run(world, b"mydomain.org\0evil\0pw")
        assert result.code == 1
        assert "UID=0" not in result.out and result.out == ""
    finally:
        table.write_bytes(original)
