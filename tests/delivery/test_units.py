"""In-process tests of the delivery building blocks (no launcher, no system user)."""

from __future__ import annotations

import os
import re
import time

import pytest

from vmreconcile.runtime.delivery import maildir, maildirsize
from vmreconcile.runtime.delivery.errors import DeliveryFailure
from vmreconcile.runtime.delivery.forward import envelope
from vmreconcile.runtime.delivery.message import CHUNK, Message
from vmreconcile.runtime.delivery.vdeliver import UsageError, parse_options

DT = b"Delivered-To: vbase1-me@mydomain.org\n"


def message_in(tmp_path, data: bytes) -> Message:
    path = tmp_path / "m"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    return Message(fd, len(data))


@pytest.mark.parametrize(
    ("data", "loops"),
    [
        (DT + b"\nbody\n", True),
        (b"X: 1\n" + DT.upper() + b"\n", True),
        (b"X: 1\n\n" + DT, False),  # in the body
        (b"X: 1\n" + DT[:-1] + b"x\n\n", False),  # longer line
        (b"X: 1\n" + b" " + DT + b"\n", False),  # continuation line
        (DT[:-1], True),  # last line without newline
        (b"", False),
        (b"X: " + b"a" * (3 * CHUNK) + b"\n" + DT + b"\n", True),  # huge header line before it
        (b"X: " + b"a" * (CHUNK - 10) + b"\n" + DT + b"\n", True),  # our line spans two chunks
        (b"Y: " + DT, False),
    ],
)
def test_loop_check_reads_only_the_header(tmp_path, data, loops):
    message = message_in(tmp_path, data)
    try:
        assert message.header_has_line(DT) is loops
    finally:
        os.close(message.fd)


def test_copy_to_streams_the_whole_message(tmp_path):
    data = os.urandom(3 * CHUNK + 17)
    message = message_in(tmp_path, data)
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        message.copy_to(out)
    finally:
        os.close(out)
        os.close(message.fd)
    assert (tmp_path / "out").read_bytes() == data


def test_unique_names_follow_the_maildir_spec(monkeypatch):
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "mx/a:b", "r", "v", "m")))
    first = maildir.unique_name(120, now_ns=1_795_546_316_123_456_789)
    second = maildir.unique_name(120, now_ns=1_795_546_316_123_456_789)
    pattern = rf"1795546316\.M123456P{os.getpid()}Q(\d+)\.mx\\057a\\072b,S=120"
    assert re.fullmatch(pattern, first)
    assert first != second and "/" not in first and ":" not in first


def test_write_pending_retries_a_bounded_number_of_times_and_cleans_up(tmp_path, monkeypatch):
    for sub in ("tmp", "new", "cur"):
        (tmp_path / sub).mkdir()
    monkeypatch.setattr(maildir, "RETRY_PAUSE", 0)
    calls = []

    def failing(fd):
        calls.append(fd)
        os.write(fd, b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(DeliveryFailure) as caught:
        maildir.write_pending(str(tmp_path), 10, failing)
    assert caught.value.code == 111 and "Error writing the output file." in caught.value.message
    assert len(calls) == maildir.ATTEMPTS
    assert list((tmp_path / "tmp").iterdir()) == []


def test_edquot_bounces_at_once(tmp_path):
    for sub in ("tmp", "new"):
        (tmp_path / sub).mkdir()

    def over_quota(fd):
        raise OSError(122, "Disk quota exceeded")

    with pytest.raises(DeliveryFailure) as caught:
        maildir.write_pending(str(tmp_path), 10, over_quota)
    assert (caught.value.code, caught.value.message) == (100, "Delivery failed due to system quota violation")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_short_write_is_never_committed(tmp_path, monkeypatch):
    for sub in ("tmp", "new"):
        (tmp_path / sub).mkdir()
    monkeypatch.setattr(maildir, "RETRY_PAUSE", 0)
    with pytest.raises(DeliveryFailure):
        maildir.write_pending(str(tmp_path), 10, lambda fd: os.write(fd, b"short"))
    assert list((tmp_path / "tmp").iterdir()) == [] and list((tmp_path / "new").iterdir()) == []


def make_box(tmp_path):
    for sub in ("tmp", "new", "cur"):
        (tmp_path / sub).mkdir()
    return str(tmp_path)


def test_maildirsize_is_trusted_only_while_fresh(tmp_path):
    box = make_box(tmp_path)
    (tmp_path / "new" / "1.M1P1.h,S=500").write_bytes(b"x")
    usage = maildirsize.recompute(box, "1000S,0C")
    assert (usage.bytes, usage.count, usage.fresh) == (500, 1, True)
    assert maildirsize.read_usage(box, "1000S,0C").bytes == 500
    assert maildirsize.read_usage(box, "2000S,0C") is None  # other definition
    maildirsize.record_delivery(box, 200)
    read = maildirsize.read_usage(box, "1000S,0C")
    assert (read.bytes, read.count, read.fresh) == (700, 2, False)
    past = time.time() - 100
    os.utime(tmp_path / "maildirsize", (past, past))  # cur/ changed after it
    os.utime(tmp_path / "cur", (past + 50, past + 50))
    assert maildirsize.read_usage(box, "1000S,0C") is None


@pytest.mark.parametrize(
    ("first_line", "same"),
    [("1000S", True), ("0C,1000S", True), ("1000S,0C", True), ("1000S,5C", False), ("999S", False), ("1000X", False)],
)
def test_maildirsize_written_by_dovecot_counts_when_its_limits_are_ours(tmp_path, first_line, same):
    """Dovecot's maildir quota leaves "no limit" parts out; vdeliver must not rewrite its file for that."""
    box = make_box(tmp_path)
    (tmp_path / "maildirsize").write_text(f"{first_line}\n300 1\n")
    future = time.time() + 100
    os.utime(tmp_path / "maildirsize", (future, future))
    read = maildirsize.read_usage(box, "1000S,0C")
    assert (read is not None and read.bytes == 300) == same


@pytest.mark.parametrize(
    "text",
    ["1000S,0C\n-600 -1\n", "1000S,0C\n1 2 3\n", "1000S,0C\nabc 1\n", "1000S,0C\n1 1", "1000S,0C\n" + "1 1\n" * 2000],
)
def test_maildirsize_that_cannot_be_right_is_not_used(tmp_path, text):
    box = make_box(tmp_path)
    (tmp_path / "maildirsize").write_text(text)
    future = time.time() + 100
    os.utime(tmp_path / "maildirsize", (future, future))
    assert maildirsize.read_usage(box, "1000S,0C") is None


def test_envelope_rules():
    assert (
        envelope("sender@remote.org", ("a@b.c", "bob"), "example.com", "/nonexistent")
        == b"Fsender@remote.org\0Ta@b.c\0Tbob@example.com\0\0"
    )


def test_envelope_postmaster_uses_control_me(tmp_path):
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "me").write_text("me.example.net\n")
    assert envelope("", ("postmaster@",), "example.com", str(tmp_path)) == b"F\0Tpostmaster@me.example.net\0\0"


def test_option_parsing():
    options = parse_options(["-dFr", "--no-predeliver", "--quiet"])
    assert (options.delivered_to, options.from_line, options.return_path) == (False, True, False)
    assert (options.predeliver, options.postdeliver, options.quiet) == (False, True, True)
    assert parse_options(["-d", "-D"]).delivered_to is True
    for bad in (["x"], ["-z"], ["--nope"], ["--", "x"]):
        with pytest.raises(UsageError):
            parse_options(bad)
