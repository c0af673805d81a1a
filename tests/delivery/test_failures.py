"""Failures: qmail-queue refusing or crashing, bad maildirs, full disks. Never a partial message."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time

import pytest

from tests.conftest import requires_root
from vmreconcile.model import VirtualUser
from vmreconcile.runtime.delivery import maildir

from .conftest import SMALL_EML

ME = "./users/me"


def assert_nothing_stored(domain, maildir=ME):
    assert domain.files(maildir) == []
    assert domain.files(maildir, "tmp") == []


@pytest.mark.parametrize(
    ("code", "text"),
    [
        ("1", "qmail-queue exited with an error!"),
        ("31", "qmail-queue exited with an error!"),
        ("crash", "qmail-queue crashed!"),
    ],
)
def test_qmail_queue_failure_defers_and_leaves_nothing(domain, code, text):
    domain.write("qq-exit", code + "\n")
    result = domain.deliver("me")
    assert (result.code, result.stdout) == (111, f"vdeliver: {text}\n".encode())
    assert_nothing_stored(domain)
    assert len(domain.queued()) == 1  # it was tried with the right envelope
    assert domain.queued()[0][1] == b"Fsender@example.net\0Tme-copy@backup.example\0\0"


def private_qmail_root(domain, me: str | None, with_queue: bool, queue_script: str | None = None) -> None:
    """Point this domain's ``qmail-root`` at a fresh tree under the baked root."""
    name = f"/var/qmail-{secrets.token_hex(4)}"
    tree = domain.runtime.root / name.lstrip("/")
    (tree / "control").mkdir(parents=True)
    (tree / "bin").mkdir()
    for path in (tree, tree / "control", tree / "bin"):
        path.chmod(0o755)
    if me is not None:
        (tree / "control" / "me").write_text(me)
    if queue_script is not None:
        (tree / "bin" / "qmail-queue").write_text(queue_script)
        (tree / "bin" / "qmail-queue").chmod(0o755)
    elif with_queue:
        os.symlink(domain.runtime.root / "var/qmail/bin/qmail-queue", tree / "bin" / "qmail-queue")
    domain.write(".vmailmgr/qmail-root", name + "\n")


def test_qmail_queue_that_stops_reading_defers_even_if_it_exits_0(domain):
    private_qmail_root(domain, "mx.oracle.test\n", with_queue=True, queue_script="#!/bin/sh\nexit 0\n")
    result = domain.deliver("me", SMALL_EML + b"y" * (1 << 20))
    assert (result.code, result.stdout) == (111, b"vdeliver: Error writing to pipe\n")
    assert_nothing_stored(domain)


def test_missing_qmail_queue_defers(domain):
    private_qmail_root(domain, "mx.oracle.test\n", with_queue=False)
    result = domain.deliver("me")
    assert (result.code, result.stdout) == (111, b"vdeliver: Exec of qmail-queue failed.\n")
    assert_nothing_stored(domain)


@pytest.mark.parametrize("me", ["", "\n", None])
def test_empty_control_me_defers_a_postmaster_forward(domain, me):
    private_qmail_root(domain, me, with_queue=True)
    result = domain.deliver("postmaster")
    assert (result.code, result.stdout) == (111, b"vdeliver: control/me is empty!\n")
    assert_nothing_stored(domain, "./users/postmaster")
    assert domain.queued() == []


def test_control_me_is_used_unstripped_from_the_per_domain_qmail_root(domain):
    private_qmail_root(domain, " other.host \nsecond\n", with_queue=True)
    assert domain.deliver("postmaster").code == 0
    assert domain.queued()[0][1] == b"Fsender@example.net\0Tpostmaster@ other.host \0\0"


def test_not_a_maildir_defers(domain):
    shutil.rmtree(domain.home / "users/me/tmp")
    result = domain.deliver("me")
    assert (result.code, result.stdout) == (111, b"vdeliver: Destination directory does not appear to be a maildir.\n")
    assert domain.files(ME) == [] and domain.queued() == []


def test_unwritable_tmp_is_retried_a_bounded_number_of_times_then_defers(domain):
    (domain.home / "users/me/tmp").chmod(0o500)
    started = time.monotonic()
    result = domain.deliver("me", timeout=30)
    elapsed = time.monotonic() - started
    assert result.code == 111
    assert result.stdout == b"vdeliver: Could not create a file in the maildir: Permission denied\n"
    pauses = sum(maildir.RETRY_PAUSE * n for n in range(1, maildir.ATTEMPTS))
    assert pauses <= elapsed < pauses + 5
    assert domain.files(ME) == [] and domain.queued() == []


def test_link_failure_after_the_forward_defers_and_leaves_no_copy(domain):
    """The one documented duplicate: the forward went out, qmail will retry the whole delivery."""
    (domain.home / "users/me/new").chmod(0o500)
    result = domain.deliver("me")
    assert result.code == 111
    assert result.stdout == b"vdeliver: Error linking the temp file to the new file. (Permission denied)\n"
    assert_nothing_stored(domain)
    assert len(domain.queued()) == 1


def test_corrupt_table_defers_instead_of_bouncing(domain):
    domain.write("passwd.cdb", b"\0" * 100, 0o600)
    result = domain.deliver("me")
    assert result.code == 111
    assert result.stdout.startswith(b"vdeliver: Could not read the virtual user table:")


def test_missing_table_is_an_unknown_user(domain):
    (domain.home / "passwd.cdb").unlink()
    result = domain.deliver("me")
    assert (result.code, result.stdout) == (100, b"vdeliver: Invalid or unknown virtual user 'me'\n")


@pytest.fixture
def small_tmpfs(domain):
    """A 64 kB tmpfs holding the maildir of user ``tiny`` (root only)."""
    mount = domain.home / "users" / "tiny"
    mount.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=64,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        domain.set_table(
            [
                VirtualUser("tiny", directory="./users/tiny"),
                VirtualUser("both", directory="./users/tiny", forwards=("x@y.example",)),
            ]
        )
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@requires_root
def test_disk_full_defers_and_leaves_nothing_partial(domain, small_tmpfs):
    big = SMALL_EML + b"z" * (200 * 1024)
    result = domain.deliver("tiny", big, timeout=30)
    assert result.code == 111
    assert result.stdout.startswith(b"vdeliver: Error writing the output file.")
    assert_nothing_stored(domain, "./users/tiny")
    # the filesystem is usable again afterwards and small mail still gets through whole
    assert domain.deliver("tiny").code == 0
    assert domain.contents("./users/tiny") == [
        domain.env("tiny")["RPLINE"].encode() + domain.env("tiny")["DTLINE"].encode() + SMALL_EML
    ]


@requires_root
def test_disk_full_with_a_forward_queues_nothing(domain, small_tmpfs):
    result = domain.deliver("both", SMALL_EML + b"z" * (200 * 1024), timeout=30)
    assert result.code == 111
    assert_nothing_stored(domain, "./users/tiny")
    assert domain.queued() == []


def test_parallel_deliveries_to_one_mailbox_are_all_stored_whole_under_unique_names(domain):
    domain.set_table([VirtualUser("p", directory="./users/p", hard_quota=10**9)])
    messages = [SMALL_EML + f"message {n}\n".encode() * 2000 for n in range(12)]
    procs = [domain.popen("p", m) for m in messages]
    assert [p.wait(timeout=60) for p in procs] == [0] * len(procs)
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    env = domain.env("p")
    prefix = env["RPLINE"].encode() + env["DTLINE"].encode()
    assert sorted(domain.contents("./users/p")) == sorted(prefix + m for m in messages)
    assert domain.files("./users/p", "tmp") == []
