"""The four limits VMailMgr stores but never enforced: each exactly at its edge, plus maildirsize."""

from __future__ import annotations

import os
import time

from vmreconcile.model import VirtualUser

from .conftest import SMALL_EML

BOX = "./users/u"


def stored_size(domain, ext="u") -> int:
    env = domain.env(ext)
    return len(env["RPLINE"]) + len(env["DTLINE"]) + len(SMALL_EML)


def user(**limits) -> VirtualUser:
    return VirtualUser("u", directory=BOX, **limits)


def maildirsize(domain) -> tuple[str, int, int]:
    lines = (domain.home / BOX / "maildirsize").read_text().splitlines()
    pairs = [tuple(int(x) for x in line.split()) for line in lines[1:]]
    return lines[0], sum(p[0] for p in pairs), sum(p[1] for p in pairs)


def test_message_size_exactly_at_the_limit_passes_one_byte_over_bounces(domain):
    domain.set_table([user(message_size_limit=len(SMALL_EML))])
    assert domain.deliver("u").code == 0
    result = domain.deliver("u", SMALL_EML + b"x")
    assert result.code == 100
    assert (
        result.stdout
        == (
            f"vdeliver: Message of {len(SMALL_EML) + 1} bytes is larger than the limit of "
            f"{len(SMALL_EML)} bytes for virtual user 'u'. (#5.3.4)\n"
        ).encode()
    )
    assert len(domain.files(BOX)) == 1 and domain.files(BOX, "tmp") == []


def test_message_size_limit_also_guards_forward_only_aliases(domain):
    domain.set_table([VirtualUser("fw", forwards=("a@b.example",), has_mailbox=False, message_size_limit=10)])
    assert domain.deliver("fw").code == 100
    assert domain.queued() == []


def test_message_count_limit_edge(domain):
    domain.set_table([user(message_count_limit=2)])
    assert domain.deliver("u").code == 0
    assert domain.deliver("u").code == 0
    result = domain.deliver("u")
    assert result.code == 100
    assert result.stdout == (
        b"vdeliver: The mailbox of virtual user 'u' is full: it holds 2 messages and its "
        b"limit is 2 messages. (#5.2.2)\n"
    )
    assert len(domain.files(BOX)) == 2 and domain.files(BOX, "tmp") == []


def test_hard_quota_exactly_full_passes_one_byte_over_bounces(domain):
    size = stored_size(domain)
    domain.set_table([user(hard_quota=2 * size), VirtualUser("v", directory="./users/v", hard_quota=2 * size - 1)])
    assert domain.deliver("u").code == 0
    assert domain.deliver("u").code == 0  # now exactly at the quota
    result = domain.deliver("u")
    assert result.code == 100
    assert (
        result.stdout
        == (
            f"vdeliver: The mailbox of virtual user 'u' is full: it holds {2 * size} bytes, this "
            f"message needs {size} more and the quota is {2 * size} bytes. (#5.2.2)\n"
        ).encode()
    )
    assert len(domain.files(BOX)) == 2
    assert maildirsize(domain) == (f"{2 * size}S,0C", 2 * size, 2)

    size_v = stored_size(domain, "v")
    assert domain.deliver("v").code == 0
    assert domain.deliver("v").code == 100  # 2*size_v is one byte over
    assert len(domain.files("./users/v")) == 1 and size_v == size


def test_quota_bounce_forwards_nothing(domain):
    domain.set_table([VirtualUser("u", directory=BOX, forwards=("x@y.example",), message_count_limit=1)])
    assert domain.deliver("u").code == 0
    assert domain.deliver("u").code == 100
    assert len(domain.queued()) == 1


def test_soft_quota_delivers_and_warns_once_until_usage_drops(domain):
    size = stored_size(domain)
    domain.set_table([user(soft_quota=size)])
    assert domain.deliver("u").code == 0  # exactly at the soft quota: no warning
    assert len(domain.files(BOX)) == 1
    assert domain.deliver("u").code == 0  # over it: delivered plus one warning
    mails = domain.contents(BOX)
    warnings = [m for m in mails if b"Subject: Warning: your mailbox is over its soft quota" in m]
    assert len(mails) == 3 and len(warnings) == 1
    assert f"more than its soft quota of {size} bytes".encode() in warnings[0]
    assert domain.deliver("u").code == 0  # still over: no second warning
    assert len(domain.files(BOX)) == 4

    for path in domain.files(BOX):  # the user empties the mailbox (POP3: maildirsize untouched)
        path.unlink()
    assert domain.deliver("u").code == 0  # back at the soft quota: the warning is re-armed
    assert domain.deliver("u").code == 0
    assert sum(b"over its soft quota" in m for m in domain.contents(BOX)) == 1
    assert len(domain.files(BOX)) == 3


def test_stale_maildirsize_after_pop3_deletes_never_bounces(domain):
    size = stored_size(domain)
    domain.set_table([user(hard_quota=3 * size, message_count_limit=3)])
    for _ in range(3):
        assert domain.deliver("u").code == 0
    assert domain.deliver("u").code == 100
    for path in domain.files(BOX)[:2]:  # deleted by a POP3 server that ignores maildirsize
        path.unlink()
    assert maildirsize(domain)[1:] == (3 * size, 3)  # the file still claims a full mailbox
    assert domain.deliver("u").code == 0
    assert domain.deliver("u").code == 0
    assert domain.deliver("u").code == 100
    assert len(domain.files(BOX)) == 3
    assert maildirsize(domain)[1:] == (3 * size, 3)


def test_maildirsize_that_looks_fresh_but_is_wrong_is_recomputed_before_a_bounce(domain):
    """Its mtime is newer than new/ and cur/, yet the figure is wrong: we still must not bounce."""
    domain.set_table([user(hard_quota=10 * stored_size(domain))])
    path = domain.write(BOX + "/maildirsize", f"{10 * stored_size(domain)}S,0C\n999999 5\n", 0o600)
    future = time.time() + 3600
    os.utime(path, (future, future))
    assert domain.deliver("u").code == 0
    assert maildirsize(domain)[1:] == (stored_size(domain), 1)


def test_garbage_or_foreign_definition_in_maildirsize_is_recomputed(domain):
    size = stored_size(domain)
    domain.set_table([user(hard_quota=5 * size)])
    assert domain.deliver("u").code == 0
    domain.write(BOX + "/maildirsize", "123S\nnot numbers\n", 0o600)
    assert domain.deliver("u").code == 0
    assert maildirsize(domain) == (f"{5 * size}S,0C", 2 * size, 2)


def test_messages_in_cur_and_folders_count(domain):
    size = stored_size(domain)
    domain.set_table([user(message_count_limit=3)])
    domain.write(BOX + "/cur/1.M1P1.h,S=100:2,S", b"x" * 100, 0o600)
    domain.write(BOX + "/.Sent/cur/2.M2P2.h:2,S", b"y" * 50, 0o600)
    assert domain.deliver("u").code == 0
    assert maildirsize(domain) == ("0S,3C", 150 + size, 3)
    assert domain.deliver("u").code == 100


def test_users_without_limits_get_no_accounting(domain):
    assert domain.deliver("me").code == 0
    assert not (domain.home / "users/me/maildirsize").exists()


def test_old_format_records_take_the_configured_default_limits(domain):
    """``:pass:dest`` records carry no limits; VMailMgr gives them the ``default-*`` options."""
    from vmreconcile.formats.cdb import build_cdb

    domain.write("passwd.cdb", build_cdb([(b"old", b":*:./users/old")]), 0o600)
    domain.make_maildir("./users/old")
    domain.write(".vmailmgr/default-msgsize", f"{len(SMALL_EML)}\n")
    assert domain.deliver("old").code == 0
    assert domain.deliver("old", SMALL_EML + b"!").code == 100
    assert len(domain.files("./users/old")) == 1
