"""Every real qmail-local → VMailMgr delivery of the oracle, replayed through our launcher.

Same exit code, same stdout, the same bytes in the maildir file (only the unique name may
differ), and the same message and envelope handed to qmail-queue. Two oracle cases are not
replayed as-is: ``dry-run-me`` (``qmail-local -n`` never runs vdeliver) and
``bob-msgsize-50000-big-message``, which VMailMgr accepted and we bounce on purpose.
"""

from __future__ import annotations

import pytest

from tests.conftest import FIXTURES

from .oracle_cases import load_cases

CASES = [c for c in load_cases() if not c.dry_run and c.name != "bob-msgsize-50000-big-message"]
MAILDIRS = [
    "./users/" + d
    for d in (
        "me",
        "alice",
        "bob",
        "Henry:Ford",
        "postmaster",
        "frank",
        "carol",
        "root",
        "mailer-daemon",
        "nopass",
        "dave",
        "erin",
    )
]


def test_the_oracle_log_has_the_cases_we_expect():
    names = {c.name for c in load_cases()}
    assert len(CASES) == 10
    assert {"dry-run-me", "bob-msgsize-50000-big-message", "dave-expired", "unknown-user-goes-to-catchall"} <= names


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_oracle_delivery(domain, case):
    message = (FIXTURES / "messages" / case.message_file).read_bytes()
    result = domain.deliver(case.ext, message, env=domain.env(case.ext, sender=case.sender))

    assert result.code == case.exit, result
    assert result.stdout.decode().splitlines() == case.stdout
    assert result.stderr == b""
    for maildir in MAILDIRS:
        got = domain.contents(maildir)
        if maildir == case.mailbox_path:
            assert got == [case.mailbox]
            if domain.uid is not None:  # written by the throwaway base user, not by root
                assert domain.files(maildir)[0].stat().st_uid == domain.uid
        else:
            assert got == [], maildir
        assert domain.contents(maildir, "tmp") == [], maildir
    queued = domain.queued()
    if case.queued_envelope is None:
        assert queued == []
    else:
        assert queued == [(case.queued_message, case.queued_envelope)]


def test_bob_big_message_is_bounced_by_his_message_size_limit(domain):
    """The oracle accepted bob's 72 kB message despite ``msgsize 50000``; we enforce it."""
    big = [c for c in load_cases() if c.name == "bob-msgsize-50000-big-message"][0]
    body = "".join(f"line {n:05d} " + "x" * 60 + "\n" for n in range(1000))
    message = (
        (FIXTURES / "messages" / "small.eml")
        .read_bytes()
        .replace(b"oracle delivery test", b"oracle big message test")
        .split(b"\n\n", 1)[0]
        + b"\n\n"
        + body.encode()
    )
    assert len(message) == 72171
    assert big.mailbox is not None and big.mailbox.endswith(b"line 00999 " + b"x" * 60 + b"\n")
    result = domain.deliver("bob", message)
    assert result.code == 100
    assert result.stdout == (
        b"vdeliver: Message of 72171 bytes is larger than the limit of 50000 bytes for virtual user 'bob'. (#5.3.4)\n"
    )
    assert domain.files("./users/bob") == []
    assert domain.files("./users/bob", "tmp") == []
