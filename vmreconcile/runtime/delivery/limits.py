"""The four per-user limits VMailMgr stores but never enforced, enforced at delivery [compat: fields].

Rules (all inclusive: a value exactly at the limit passes, one more bounces):

* ``message_size_limit``: the message's bytes as qmail-local gave them on stdin, before the
  ``Return-Path``/``Delivered-To`` lines we add. Checked for every delivery, forwards included.
* ``message_count_limit``: messages in the mailbox plus this one.
* ``hard_quota``: bytes in the mailbox plus the bytes this delivery stores (the message with
  our added lines: the file size, as ``maildirsize`` records it).
* ``soft_quota``: never bounces. When a delivery takes the mailbox above it, one warning
  message is left in the mailbox; no further warning until usage drops to the soft quota or
  below again (a marker file ``vdeliver-softquota-warned`` in the maildir remembers it).

The count and the quotas apply only when the message goes into the mailbox. A bounce is
decided only on a figure recomputed by walking the mailbox, never on ``maildirsize`` alone.
"""

from __future__ import annotations

import os
import time

from ...model import VirtualUser
from ...tables import write_all
from .errors import permanent
from .maildir import PendingFile, unlink_quietly, write_pending
from .maildirsize import Usage, current_usage, quota_definition, recompute, record_delivery

WARNED_MARKER = "vdeliver-softquota-warned"


def check_message_size(user: VirtualUser, name: str, message_size: int) -> None:
    limit = user.message_size_limit
    if limit is not None and message_size > limit:
        raise permanent(
            f"Message of {message_size} bytes is larger than the limit of {limit} bytes "
            f"for virtual user '{name}'. (#5.3.4)"
        )


def has_mailbox_limits(user: VirtualUser) -> bool:
    return user.hard_quota is not None or user.soft_quota is not None or user.message_count_limit is not None


def _over(user: VirtualUser, usage: Usage, stored: int) -> str | None:
    if user.message_count_limit is not None and usage.count + 1 > user.message_count_limit:
        return f"holds {usage.count} messages and its limit is {user.message_count_limit} messages. (#5.2.2)"
    if user.hard_quota is not None and usage.bytes + stored > user.hard_quota:
        return (
            f"holds {usage.bytes} bytes, this message needs {stored} more and the quota is "
            f"{user.hard_quota} bytes. (#5.2.2)"
        )
    return None


def check_mailbox(user: VirtualUser, name: str, maildir: str, stored: int) -> Usage | None:
    """Bounce if the delivery would pass a hard limit; return the usage before it (or None
    when the user has no mailbox limits, so no accounting is done at all)."""
    if not has_mailbox_limits(user):
        return None
    definition = quota_definition(user.hard_quota, user.message_count_limit)
    usage = current_usage(maildir, definition)
    if _over(user, usage, stored) and not usage.fresh:
        usage = recompute(maildir, definition)
    reason = _over(user, usage, stored)
    if reason:
        raise permanent(f"The mailbox of virtual user '{name}' is full: it {reason}")
    return usage


def after_delivery(user: VirtualUser, maildir: str, usage: Usage | None, stored: int, host: str) -> None:
    """Account for the delivered message and leave the soft-quota warning if it is due."""
    if usage is None:
        return
    record_delivery(maildir, stored)
    soft = user.soft_quota
    marker = os.path.join(maildir, WARNED_MARKER)
    if soft is None or usage.bytes + stored <= soft:
        unlink_quietly(marker)
        return
    if os.path.lexists(marker):
        return
    if not usage.fresh:
        usage = recompute(maildir, quota_definition(user.hard_quota, user.message_count_limit))
        if usage.bytes <= soft:
            return
        used = usage.bytes
    else:
        used = usage.bytes + stored
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return  # EEXIST: another delivery is warning right now; anything else: no warning
    os.close(fd)
    text = warning_text(user, used, host)
    try:
        pending: PendingFile = write_pending(maildir, len(text), lambda out: write_all(out, text))
        pending.commit()
    except Exception:
        unlink_quietly(marker)
        return
    record_delivery(maildir, len(text))


def warning_text(user: VirtualUser, used: int, host: str) -> bytes:
    """The soft-quota warning message (plain ASCII, RFC 5322)."""
    now = time.gmtime()
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", now)
    hard = f"{user.hard_quota} bytes" if user.hard_quota is not None else "not set"
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>",
        f"To: <{user.name}@{host}>",
        "Subject: Warning: your mailbox is over its soft quota",
        f"Date: {date}",
        f"Message-ID: <{int(time.time())}.{os.getpid()}.softquota@{host}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Auto-Submitted: auto-generated",
        "",
        f"Your mailbox now holds {used} bytes, more than its soft quota of {user.soft_quota} bytes.",
        f"The hard quota is {hard}; once it is reached, new mail is returned to its senders.",
        "Mail is still being delivered. Please delete or download some messages.",
        "",
        "This is the only warning until the mailbox is back under its soft quota.",
        "",
    ]
    return "\n".join(lines).encode("ascii", "replace")
