"""SIGKILL at any moment of a delivery never leaves anything but whole messages in ``new/``."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time

from vmreconcile.model import VirtualUser

BOX = "./users/k"
BIG = 24 * 1024 * 1024


def big_message(domain):
    head = b"From: a@b.example\nSubject: big\n\n"
    line = b"0123456789abcdef" * 4 + b"\n"
    path = domain.message_file(head + line * ((BIG - len(head)) // len(line)))
    return path


def expected_digest(domain, path) -> tuple[int, str]:
    env = domain.env("k")
    digest = hashlib.sha256(env["RPLINE"].encode() + env["DTLINE"].encode())
    with open(path, "rb") as fp:
        for chunk in iter(lambda: fp.read(1 << 20), b""):
            digest.update(chunk)
    return path.stat().st_size + len(env["RPLINE"]) + len(env["DTLINE"]), digest.hexdigest()


def assert_only_whole_messages(domain, size, digest):
    for path in domain.files(BOX):
        assert path.stat().st_size == size, path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_sigkill_while_writing_tmp_leaves_nothing_in_new(domain):
    domain.set_table([VirtualUser("k", directory=BOX)])
    message = big_message(domain)
    size, digest = expected_digest(domain, message)
    proc = domain.popen("k", message)
    deadline = time.monotonic() + 30
    while not domain.files(BOX, "tmp") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed while the tmp/ file was being written
    assert domain.files(BOX) == []
    left = domain.files(BOX, "tmp")
    assert len(left) == 1 and left[0].stat().st_size < size  # the partial file stays in tmp/ only
    message.unlink()


def test_sigkill_at_many_moments(domain):
    domain.set_table([VirtualUser("k", directory=BOX)])
    message = big_message(domain)
    size, digest = expected_digest(domain, message)
    killed = 0
    for delay in (0.0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.25):
        proc = domain.popen("k", message)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed += proc.returncode == -signal.SIGKILL
        assert_only_whole_messages(domain, size, digest)
    assert killed >= 1
    message.unlink()


def test_sigkill_while_qmail_queue_runs_stores_no_copy(domain):
    """The mailbox copy is complete in tmp/ but is linked only after qmail-queue accepted."""
    domain.set_table([VirtualUser("k", directory=BOX, forwards=("x@y.example",))])
    domain.write("qq-sleep", "5\n")
    proc = domain.popen("k")
    deadline = time.monotonic() + 20
    while not list((domain.home / "qq").glob("*.environ")):  # written after the envelope was read
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    standin = int(next((domain.home / "qq").glob("*.environ")).stem)
    with contextlib.suppress(ProcessLookupError):
        os.kill(standin, signal.SIGKILL)  # the orphaned qmail-queue stand-in (its pid is its record name)
    assert proc.returncode == -signal.SIGKILL
    assert domain.files(BOX) == []
    assert len(domain.files(BOX, "tmp")) == 1  # whole, but never visible; maildir readers expire it
