"""``vdeliver``: the qmail-local side of every virtual domain [compat: vdeliver].

``~base/.qmail-default`` is ``|<bindir>/vdeliver``; qmail-local runs it as the base user, in
``$HOME``, with the message on a seekable stdin and ``EXT``, ``HOST``, ``SENDER``, ``UFLINE``,
``RPLINE`` and ``DTLINE`` in the environment. It looks ``EXT`` up in ``passwd.cdb`` (falling
back to the ``default-username`` catch-all), then stores the message in the user's maildir,
forwards it through qmail-queue, or both. Exit codes and stdout texts are VMailMgr's:
0 delivered, 99 delivered-and-stop, 100 bounce, 111 try later, 1 usage/HOME problems.

Where it deliberately differs from VMailMgr 0.97 [compat: differences] (see docs/delivery.md):
* the four stored limits are enforced (`limits`), with a soft-quota warning;
* a message that already has our ``Delivered-To:`` line bounces (loop);
* maildir writes are bounded retries with ``fsync``s, never an endless loop (`maildir`);
* a failing ``vdeliver-postdeliver`` after a successful delivery exits 0 (not the hook's
  code), so qmail does not deliver the message a second time.
"""

from __future__ import annotations

import os
import sys
import time

from ...formats.cdb import CdbError, CdbReader
from ...formats.config import ConfigChain
from ...formats.vpwentry import RecordError, decode_record, user_key
from ...host import LOCAL_CONFIG_DIR, Host, read_option_file
from ...model import UINT_MAX, VirtualUser, vuser_environment
from ...tables import TableError, open_table, table_path, write_all
from ..process import EXEC_FAILED, run_hook
from .errors import OK, STOP, TEMPORARY, USAGE, DeliveryFailure, permanent, temporary
from .maildir import PendingFile, check_maildir, write_pending
from .message import Message

USAGE_TEXT = "usage: vdeliver [-D|-d] [-F|-f] [-R|-r] [--no-predeliver] [--no-postdeliver] [--quiet]"
REQUIRED = ("USER", "EXT", "HOST", "SENDER", "UFLINE", "RPLINE", "DTLINE")
_SHORT = {
    "D": ("delivered_to", True),
    "d": ("delivered_to", False),
    "F": ("from_line", True),
    "f": ("from_line", False),
    "R": ("return_path", True),
    "r": ("return_path", False),
}
_LONG = {
    "--no-predeliver": ("predeliver", False),
    "--no-postdeliver": ("postdeliver", False),
    "--quiet": ("quiet", True),
}


class UsageError(ValueError):
    pass


class Options:
    """The command line; defaults are VMailMgr's: ``-D -f -R``, both hooks, messages on."""

    __slots__ = ("delivered_to", "from_line", "return_path", "predeliver", "postdeliver", "quiet")

    def __init__(self) -> None:
        self.delivered_to = True
        self.from_line = False
        self.return_path = True
        self.predeliver = True
        self.postdeliver = True
        self.quiet = False


def parse_options(args: list[str]) -> Options:
    """Short flags may be bundled (``-dr``); no arguments are accepted."""
    options = Options()
    for position, arg in enumerate(args):
        if arg == "--":
            if args[position + 1 :]:
                raise UsageError("vdeliver takes no arguments")
            break
        if arg in _LONG:
            setattr(options, *_LONG[arg])
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
            for flag in arg[1:]:
                if flag not in _SHORT:
                    raise UsageError(f"unknown option -{flag}")
                setattr(options, *_SHORT[flag])
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg}")
        else:
            raise UsageError("vdeliver takes no arguments")
    return options


class Output:
    """stdout messages (qmail-local puts them in the bounce or the log); ``--quiet`` drops them."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def say(self, text: str, prefixed: bool = True) -> None:
        if self.quiet:
            return
        line = ("vdeliver: " if prefixed else "") + text + "\n"
        try:  # noqa: SIM105 - contextlib would be one more import per message
            write_all(1, line.encode("utf-8", "surrogateescape"))
        except OSError:
            pass


def main(argv: list[str], host: Host) -> int:
    try:
        options = parse_options(argv[1:])
    except UsageError as exc:
        sys.stderr.write(f"vdeliver: {exc}\n{USAGE_TEXT}\n")
        return USAGE
    out = Output(options.quiet)
    home = os.environ.get("HOME")
    if not home:
        sys.stderr.write("vdeliver: HOME is not set\n")
        return USAGE
    try:
        os.chdir(home)
    except OSError as exc:
        sys.stderr.write(f"vdeliver: Could not change to home directory {home}: {exc.strerror}\n")
        return USAGE
    try:
        return Delivery(options, host, home, out).run()
    except DeliveryFailure as failure:
        out.say(failure.message, failure.prefixed)
        return failure.code
    except Exception as exc:
        out.say(f"Internal error, delivery deferred: {type(exc).__name__}: {exc}")
        return TEMPORARY


def _config_limit(chain: ConfigChain, option: str) -> int | None:
    value = chain.unsigned(option)
    return None if value == UINT_MAX else value


def lookup_user(reader: CdbReader | None, name: str, chain: ConfigChain) -> VirtualUser | None:
    """The entry stored under ``name`` (A-Z lowercased); old ``:pass:dest`` records get the
    configured defaults as VMailMgr gives them."""
    if reader is None or not name:
        return None
    key = user_key(name)
    data = reader.get(key)
    if data is None:
        return None
    defaults = None
    if data[:1] == b":":
        defaults = {
            "hard_quota": _config_limit(chain, "default-hardquota"),
            "soft_quota": _config_limit(chain, "default-softquota"),
            "message_size_limit": _config_limit(chain, "default-msgsize"),
            "message_count_limit": _config_limit(chain, "default-msgcount"),
            "expires": _config_limit(chain, "default-expiry"),
        }
    return decode_record(key, data, defaults)


def export_user(name: str, user: VirtualUser) -> None:
    """The ``VUSER_*`` variables [compat: fields], for the hooks and qmail-queue (``VUSER`` is the name as looked up)."""
    env = os.environ
    env["VUSER"] = name
    env["MAILDIR"] = user.directory
    env.update(vuser_environment(user))


class Delivery:
    """One run of vdeliver, in VMailMgr's order: environment, lookup, hooks, mailbox, forwards."""

    def __init__(self, options: Options, host: Host, home: str, out: Output) -> None:
        self.options = options
        self.host = host
        self.home = home
        self.out = out
        global_dir = host.config_dir_str
        local_dir = os.path.join(home, LOCAL_CONFIG_DIR)
        self.chain = ConfigChain([local_dir, global_dir], read_option_file)
        self.hook_dirs = (global_dir, local_dir)

    def run_hook(self, name: str) -> int:
        """The shared hook runner, as vdeliver has always used it: a hook that cannot be
        started at all gives 127, and a directory in a hook's place is skipped."""
        return run_hook(name, self.hook_dirs, cannot_start=EXEC_FAILED, skip_directories=True)

    def run(self) -> int:
        for var in REQUIRED:
            if var not in os.environ:
                raise permanent(f"{var} is not set")
        envb = os.environb
        ext, sender, mailhost = os.environ["EXT"], os.environ["SENDER"], os.environ["HOST"]
        dtline = envb[b"DTLINE"]
        header = (
            (envb[b"UFLINE"] if self.options.from_line else b"")
            + (envb[b"RPLINE"] if self.options.return_path else b"")
            + (dtline if self.options.delivered_to else b"")
        )
        name, user = self.find_user(ext)
        export_user(name, user)
        message = Message.from_stdin(self.home)
        if dtline and message.header_has_line(dtline):
            raise permanent("This message is looping: it already has my Delivered-To line. (#5.4.6)")
        if self.options.predeliver:
            message.rewind()
            result = self.run_hook("vdeliver-predeliver")
            if result == STOP:
                return STOP
            if result != 0:
                raise DeliveryFailure(result % 256, "Execution of vdeliver-predeliver failed")
        if user.message_size_limit is not None:
            from .limits import check_message_size

            check_message_size(user, name, message.size)
        self.deliver(user, name, message, header, dtline, sender, mailhost)
        try:
            return self.postdeliver(message)
        except Exception as exc:
            self.out.say(f"Execution of vdeliver-postdeliver failed: {type(exc).__name__}: {exc}")
            return OK

    def find_user(self, ext: str) -> tuple[str, VirtualUser]:
        """``EXT``, then ``default-username``; unknown bounces, expired bounces."""
        try:
            reader = open_table(table_path(self.home, self.chain.text("password-file")))
            if reader is not None:
                reader.check_layout()  # a crafted layout is refused here, not walked by the lookup
            name, user = ext, lookup_user(reader, ext, self.chain)
            if user is None:
                name = self.chain.text("default-username")
                user = lookup_user(reader, name, self.chain)
        except (TableError, CdbError, RecordError, OSError) as exc:
            raise temporary(f"Could not read the virtual user table: {exc}") from None
        if user is None:
            raise permanent(f"Invalid or unknown virtual user '{ext}'")
        if user.expires is not None and user.expires < (int(time.time()) & UINT_MAX):
            raise permanent(f"Virtual user '{ext}' has expired")
        return name, user

    def qmail_root(self) -> str:
        configured = self.chain.text("qmail-root")
        try:
            return self.host.fspath(configured)
        except ValueError:
            return configured

    def deliver(
        self, user: VirtualUser, name: str, message: Message, header: bytes, dtline: bytes, sender: str, mailhost: str
    ) -> None:
        """Mailbox copy into ``tmp/``, then the forward, then the link into ``new/``."""
        # The forward and limit modules are imported only when needed: this process runs once
        # per message, and most messages neither forward nor meet a limit.
        to_mailbox = user.has_mailbox and user.mailbox_enabled and bool(user.directory)
        limited = to_mailbox and (
            user.hard_quota is not None or user.soft_quota is not None or user.message_count_limit is not None
        )
        stored = len(header) + message.size
        if user.forwards:
            from .forward import envelope, queue

            qmail_root = self.qmail_root()
            envelope_bytes = envelope(sender, user.forwards, mailhost, qmail_root)
        pending: PendingFile | None = None
        usage = None
        try:
            if to_mailbox:
                check_maildir(user.directory)
                if limited:
                    from .limits import check_mailbox

                    usage = check_mailbox(user, name, user.directory, stored)

                def fill(fd: int) -> None:
                    write_all(fd, header)
                    message.copy_to(fd)

                pending = write_pending(user.directory, stored, fill)
            if user.forwards:
                queue(
                    os.path.join(qmail_root, "bin", "qmail-queue"),
                    message,
                    dtline if self.options.delivered_to else b"",
                    envelope_bytes,
                    sender,
                )
            if pending is not None:
                pending.commit()
        finally:
            if pending is not None:
                pending.discard()
        if pending is not None and limited:
            try:
                from .limits import after_delivery

                after_delivery(user, user.directory, usage, stored, mailhost)
            except Exception as exc:
                self.out.say(f"Delivered, but the quota bookkeeping failed: {type(exc).__name__}: {exc}")

    def postdeliver(self, message: Message) -> int:
        """The postdeliver hook, except that a failing hook no longer turns a delivered message into a retry."""
        if not self.options.postdeliver:
            return OK
        if not message.rewind():
            self.out.say("Could not re-rewind standard input", prefixed=False)
            return OK
        result = self.run_hook("vdeliver-postdeliver")
        if result == STOP:
            return STOP
        if result != 0:
            self.out.say("Execution of vdeliver-postdeliver failed", prefixed=False)
        return OK
