"""vdeliver's contract beyond the oracle log: environment, options, lookup, loops and hooks [compat: vdeliver]."""

from __future__ import annotations

import pytest

from vmreconcile.model import VirtualUser

from .conftest import SMALL_EML

ME = "./users/me"


def test_catch_all_takes_unknown_names_and_sees_the_name_it_was_found_under(domain):
    domain.write(".vmailmgr/vdeliver-predeliver", '#!/bin/sh\necho "$VUSER|$MAILDIR|$EXT" > "$HOME/seen"\n', 0o755)
    result = domain.deliver("NoSuchUser")
    assert result.code == 0, result
    assert (domain.home / "seen").read_text() == "+|./users/+|NoSuchUser\n"
    assert [env for _msg, env in domain.queued()] == [b"Fsender@example.net\0Tme@mydomain.org\0\0"]


def test_unknown_user_without_catch_all_bounces(domain):
    domain.set_table([VirtualUser("me", directory=ME)])
    result = domain.deliver("nosuchuser")
    assert (result.code, result.stdout) == (100, b"vdeliver: Invalid or unknown virtual user 'nosuchuser'\n")


def test_empty_ext_always_misses_and_goes_to_the_catch_all(domain):
    domain.set_table([VirtualUser("+", directory=ME)])
    assert domain.deliver("").code == 0
    assert len(domain.files(ME)) == 1


def test_a_configured_default_username_is_the_catch_all(domain):
    domain.set_table([VirtualUser("everything", directory=ME)])
    domain.write(".vmailmgr/default-username", "everything\n")
    assert domain.deliver("whoever").code == 0
    assert len(domain.files(ME)) == 1


def test_alias_without_mailbox_or_forwards_is_dropped_silently(domain):
    result = domain.deliver("info")
    assert (result.code, result.stdout) == (0, b"")
    assert domain.queued() == []
    assert not (domain.home / "users/info/new").exists()


def test_disabled_mailbox_still_forwards_and_stores_nothing(domain):
    result = domain.deliver("frank")
    assert result.code == 0
    assert domain.files("./users/frank") == []
    assert [env for _m, env in domain.queued()] == [b"Fsender@example.net\0Tfrank3@third.example\0\0"]


def test_expired_user_bounces_and_an_expiry_in_the_future_does_not(domain):
    domain.set_table(
        [
            VirtualUser("old", directory="./users/old", expires=1000),
            VirtualUser("new", directory="./users/new", expires=4102444800),
        ]
    )
    result = domain.deliver("old")
    assert (result.code, result.stdout) == (100, b"vdeliver: Virtual user 'old' has expired\n")
    assert domain.files("./users/old") == []
    assert domain.deliver("new").code == 0


@pytest.mark.parametrize("missing", ["USER", "EXT", "HOST", "SENDER", "UFLINE", "RPLINE", "DTLINE"])
def test_each_required_variable_missing_bounces(domain, missing):
    env = domain.env("me")
    del env[missing]
    result = domain.deliver("me", env=env)
    assert (result.code, result.stdout) == (100, f"vdeliver: {missing} is not set\n".encode())
    assert domain.files(ME) == []


def test_bad_home_exits_1_on_stderr(domain):
    result = domain.deliver("me", env=domain.env("me", HOME="/nonexistent/home"))
    assert result.code == 1
    assert result.stdout == b""
    assert b"vdeliver: Could not change to home directory" in result.stderr


@pytest.mark.parametrize("args", [["extra"], ["-x"], ["--bogus"]])
def test_usage_errors_exit_1(domain, args):
    result = domain.deliver("me", args=args)
    assert result.code == 1
    assert b"usage: vdeliver" in result.stderr
    assert domain.files(ME) == []


def test_options_choose_the_added_lines(domain):
    env = domain.env("alice")
    assert domain.deliver("alice", args=["-F", "-r"]).code == 0
    assert domain.deliver("alice", args=["-dR"]).code == 0
    first, second = sorted(domain.contents("./users/alice"), key=len, reverse=True)
    assert first == env["UFLINE"].encode() + env["DTLINE"].encode() + SMALL_EML
    assert second == env["RPLINE"].encode() + SMALL_EML


def test_no_delivered_to_option_also_leaves_it_out_of_the_forward(domain):
    assert domain.deliver("sales", args=["-d"]).code == 0
    assert [msg for msg, _env in domain.queued()] == [SMALL_EML]


def test_quiet_prints_nothing(domain):
    result = domain.deliver("dave", args=["--quiet"])
    assert (result.code, result.stdout, result.stderr) == (100, b"", b"")


def test_bounce_sender_and_qmailuser_qmailhost(domain):
    result = domain.deliver("sales", env=domain.env("sales", sender=""))
    assert result.code == 0
    assert [env for _m, env in domain.queued()] == [b"F\0Tcarol@mydomain.org\0Tbob@elsewhere.example\0\0"]
    assert domain.deliver("frank", env=domain.env("frank", sender="jo@ex.org")).code == 0
    environ = sorted((domain.home / "qq").glob("*.environ"), key=lambda p: p.stat().st_mtime_ns)[-1].read_text()
    assert "QMAILUSER=jo\n" in environ and "QMAILHOST=ex.org\n" in environ


def test_vuser_environment_for_hooks(domain):
    domain.write(
        ".vmailmgr/vdeliver-predeliver", '#!/bin/sh\nenv | grep "^VUSER\\|^MAILDIR" | sort > "$HOME/seen"\n', 0o755
    )
    assert domain.deliver("Bob").code == 0
    assert (domain.home / "seen").read_text().splitlines() == [
        "MAILDIR=./users/bob",
        "VUSER=Bob",
        "VUSER_CTIME=1795546316",
        "VUSER_EXPIRY=4102444800",
        "VUSER_HARDQUOTA=-",
        "VUSER_HAS_MAILBOX=1",
        "VUSER_MAILBOX_ENABLED=1",
        "VUSER_MSGCOUNT=200",
        "VUSER_MSGSIZE=50000",
        "VUSER_PERSONAL=Bob Builder",
        "VUSER_SOFTQUOTA=-",
    ]


# -- loop detection -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "line", [b"Delivered-To: vbase1-me@mydomain.org\n", b"delivered-to: VBASE1-ME@mydomain.org\r\n"]
)
def test_message_with_our_delivered_to_line_bounces_as_a_loop(domain, line):
    looping = line + SMALL_EML
    result = domain.deliver("me", looping)
    assert result.code == 100
    assert result.stdout == b"vdeliver: This message is looping: it already has my Delivered-To line. (#5.4.6)\n"
    assert domain.files(ME) == [] and domain.files(ME, "tmp") == []
    assert domain.queued() == []


def test_delivered_to_for_someone_else_or_in_the_body_is_not_a_loop(domain):
    other = b"Delivered-To: vbase1-alice@mydomain.org\n" + SMALL_EML + b"Delivered-To: vbase1-me@mydomain.org\n"
    assert domain.deliver("me", other).code == 0
    assert len(domain.files(ME)) == 1


# -- hooks --------------------------------------------------------------------------------


def test_predeliver_99_stops_without_delivering(domain):
    domain.write(".vmailmgr/vdeliver-predeliver", "#!/bin/sh\nexit 99\n", 0o755)
    result = domain.deliver("me")
    assert (result.code, result.stdout) == (99, b"")
    assert domain.files(ME) == [] and domain.queued() == []


@pytest.mark.parametrize("code", [100, 111, 3])
def test_predeliver_failure_passes_its_code_through(domain, code):
    domain.write(".vmailmgr/vdeliver-predeliver", f"#!/bin/sh\nexit {code}\n", 0o755)
    result = domain.deliver("me")
    assert (result.code, result.stdout) == (code, b"vdeliver: Execution of vdeliver-predeliver failed\n")
    assert domain.files(ME) == [] and domain.queued() == []


def test_predeliver_killed_by_a_signal_exits_255(domain):
    domain.write(".vmailmgr/vdeliver-predeliver", "#!/bin/sh\nkill -9 $$\n", 0o755)
    assert domain.deliver("me").code == 255


def test_hook_without_execute_bit_is_skipped_and_no_predeliver_option_skips(domain):
    domain.write(".vmailmgr/vdeliver-predeliver", "#!/bin/sh\nexit 100\n", 0o644)
    assert domain.deliver("alice").code == 0
    (domain.home / ".vmailmgr/vdeliver-predeliver").chmod(0o755)
    assert domain.deliver("alice", args=["--no-predeliver"]).code == 0
    assert len(domain.files("./users/alice")) == 2


def test_hooks_read_the_whole_message_on_stdin(domain):
    domain.write(".vmailmgr/vdeliver-predeliver", '#!/bin/sh\ncat > "$HOME/pre"\n', 0o755)
    domain.write(".vmailmgr/vdeliver-postdeliver", '#!/bin/sh\ncat > "$HOME/post"\n', 0o755)
    assert domain.deliver("me").code == 0
    assert (domain.home / "pre").read_bytes() == SMALL_EML
    assert (domain.home / "post").read_bytes() == SMALL_EML


def test_failing_postdeliver_does_not_make_qmail_deliver_again(domain):
    """VMailMgr returned the hook's code (111 = retry = a duplicate); we report and exit 0."""
    domain.write(".vmailmgr/vdeliver-postdeliver", "#!/bin/sh\nexit 111\n", 0o755)
    result = domain.deliver("me")
    assert (result.code, result.stdout) == (0, b"Execution of vdeliver-postdeliver failed\n")
    assert len(domain.files(ME)) == 1 and len(domain.queued()) == 1


def test_postdeliver_99_is_passed_on_and_no_postdeliver_skips_it(domain):
    domain.write(".vmailmgr/vdeliver-postdeliver", "#!/bin/sh\nexit 99\n", 0o755)
    assert domain.deliver("alice").code == 99
    assert domain.deliver("alice", args=["--no-postdeliver"]).code == 0
    assert len(domain.files("./users/alice")) == 2


def test_pipe_on_stdin_is_spooled_and_delivered_whole(domain):
    import subprocess

    env = domain.env("alice")
    user = {} if domain.uid is None else {"user": domain.uid, "group": domain.gid, "extra_groups": []}
    proc = subprocess.run([str(domain.runtime.launcher)], input=SMALL_EML, capture_output=True, env=env, **user)
    assert proc.returncode == 0, proc
    assert domain.contents("./users/alice") == [env["RPLINE"].encode() + env["DTLINE"].encode() + SMALL_EML]


@pytest.fixture
def global_hook(domain):
    """Write a hook into the baked root's /etc/vmailmgr (per-worker root; removed afterwards)."""
    written = []

    def write(name: str, text: str):
        path = domain.runtime.root / "etc" / "vmailmgr" / name
        path.write_text(text)
        path.chmod(0o755)
        written.append(path)

    yield write
    for path in written:
        path.unlink(missing_ok=True)


def test_global_hook_runs_before_the_local_one_and_a_failure_stops_there(domain, global_hook):
    global_hook(
        "vdeliver-predeliver",
        '#!/bin/sh\necho global >> "$HOME/order"\nexit "$(cat "$HOME/rc" 2>/dev/null || echo 0)"\n',
    )
    domain.write(".vmailmgr/vdeliver-predeliver", '#!/bin/sh\necho local >> "$HOME/order"\n', 0o755)
    assert domain.deliver("alice").code == 0
    assert (domain.home / "order").read_text() == "global\nlocal\n"
    domain.write("rc", "100\n")
    result = domain.deliver("alice")
    assert (result.code, result.stdout) == (100, b"vdeliver: Execution of vdeliver-predeliver failed\n")
    assert (domain.home / "order").read_text() == "global\nlocal\nglobal\n"
    assert len(domain.files("./users/alice")) == 1
