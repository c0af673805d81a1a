"""The shared login core's pure parts (no root needed): name mapping [compat: login-names], runtime
switches, the VUSER_* environment [compat: fields] and the locale-coercion undo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vmreconcile.host import Host
from vmreconcile.model import VirtualUser
from vmreconcile.runtime.login import authvmailmgr, checkvpw, core, vauthenticate
from vmreconcile.runtime.login.core import (
    LoginFailure,
    LoginSession,
    NotVirtual,
    baseuser_candidates,
    full_name,
    lookup_baseuser,
    passwd_changeable,
    read_login_data,
    split_login,
    system_logins_enabled,
    vuser_environment,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def root(tmp_path):
    """A rooted host: base users joe and a-b, uid-0 accounts root and toor, control files."""
    (tmp_path / "etc" / "vmailmgr").mkdir(parents=True)
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\ntoor:x:0:0::/root:/bin/sh\njoe:x:1001:1001::/home/joe:/bin/sh\n"
        "a-b:x:1002:1002::/home/a-b:/bin/sh\n"
    )
    (tmp_path / "etc" / "vmailmgr" / "qmail-root").write_text("/var/qmail\n")
    control = tmp_path / "var" / "qmail" / "control"
    control.mkdir(parents=True)
    (control / "locals").write_text("localhost\nBoth.example\n")
    (control / "virtualdomains").write_text(
        "example.com:joe\n.example.com:joe\nboth.example:joe\nother.org:joe-pre\n:catchall\nEXAMPLE.net:x\nexample.net:joe\n"
    )
    return tmp_path


def test_split_login_first_separator():
    assert split_login("me@x.org", "@:", {}) == ("me", "x.org")
    assert split_login("me:x@y", "@:", {}) == ("me", "x@y")
    assert split_login("me%x", "%", {}) == ("me", "x")


def test_split_login_tcplocalhost_then_hostname():
    assert split_login("me", "@:", {"TCPLOCALHOST": "Host.Example"}) == ("me", "Host.Example")
    assert split_login("me", "@:", {"TCPLOCALHOST": ""}) == ("me", os.uname().nodename)
    assert split_login("me", "@:", {}) == ("me", os.uname().nodename)


@pytest.mark.parametrize(
    ("name", "message"), [("@x", "Empty user name"), ("me@", "Empty domain name"), ("", "Empty user name")]
)
def test_split_login_empty_parts(name, message):
    with pytest.raises(LoginFailure) as failure:
        split_login(name, "@:", {"TCPLOCALHOST": "x"})
    assert (failure.value.code, failure.value.message) == (1, message)


def test_candidates_order_and_case():
    assert baseuser_candidates("Joe-Bob-X") == [("joe-bob-x", ""), ("joe-bob", "X"), ("joe", "Bob-X")]
    assert baseuser_candidates("joe") == [("joe", "")]


def test_full_name_rules(root):
    host = Host(root)
    config = host.global_config()
    assert full_name("me", "example.com", host, config) == "joe-me"
    assert full_name("me", "mail.EXAMPLE.com", host, config) == "joe-me"  # wildcard, lowercased
    assert full_name("me", "other.org", host, config) == "joe-pre-me"
    assert full_name("me", "Both.example", host, config) == "me"  # locals wins (exact case)
    assert full_name("me", "both.example", host, config) == "joe-me"  # locals is case-sensitive
    assert full_name("me", "example.net", host, config) == "joe-me"  # last duplicate key wins
    assert full_name("me", "unknown.test", host, config) == "me"


def test_lookup_baseuser_longest_prefix_and_no_root(root):
    host = Host(root)
    find = host.find_base_user
    base, virtual = lookup_baseuser("a-b-Me", find)
    assert (base.name, virtual) == ("a-b", "Me")
    base, virtual = lookup_baseuser("JOE", find)
    assert (base.name, virtual) == ("joe", "")
    assert lookup_baseuser("root-x", find) is None  # uid 0 is never a base user
    assert lookup_baseuser("toor", find) is None
    assert lookup_baseuser("nobody-x", find) is None


def test_lookup_baseuser_asks_the_given_lookup_for_each_candidate_in_order(root):
    """One rule for both callers: authpipe passes its cached lookup instead of the host's."""
    asked = []
    joe = Host(root).find_base_user("joe")

    def find(name):
        asked.append(name)
        return joe if name == "joe" else None

    assert lookup_baseuser("Joe-Bob-X", find) == (joe, "Bob-X")
    assert asked == ["joe-bob-x", "joe-bob", "joe"]


def test_system_account_refused_by_default_and_not_virtual(root):
    session = LoginSession(Host(root), environ={"TCPLOCALHOST": "localhost"})
    with pytest.raises(LoginFailure) as failure:
        session.authenticate("joe", "whatever")
    assert failure.value.message == core.MSG_SYSTEM_LOGINS_DISABLED
    with pytest.raises(NotVirtual) as not_virtual:
        LoginSession(Host(root), environ={}).authenticate("joe@localhost", "x", virtual_only=True)
    assert not_virtual.value.base.name == "joe"


@pytest.mark.parametrize(
    ("content", "enabled"),
    [
        (None, False),
        ("", False),
        ("1\n", True),
        ("yes\n", True),
        (" YES \nno\n", True),
        ("no\n", False),
        ("0\n", False),
        ("true\n", False),
        ("\nyes\n", False),
    ],
)
def test_system_logins_switch(root, content, enabled):
    if content is not None:
        (root / "etc" / "vmailmgr" / "vmreconcile-system-logins").write_text(content)
    assert system_logins_enabled(Host(root)) is enabled


def test_passwd_changeable_lines(root):
    assert passwd_changeable(Host(root)) == frozenset()
    (root / "etc" / "vmailmgr" / "vmreconcile-passwd-changeable").write_text(
        "# comment\njoe/me\n  joe/henry.ford  \n\nbad-line\n/x\njoe/\n"
    )
    assert passwd_changeable(Host(root)) == {("joe", "me"), ("joe", "henry.ford")}
    assert core.is_passwd_changeable(Host(root), "joe", "Henry.Ford")
    assert not core.is_passwd_changeable(Host(root), "joe", "alice")


def _pipe_with(data: bytes) -> int:
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    "limit", [checkvpw.MAX_INPUT, vauthenticate.MAX_INPUT, authvmailmgr.MAX_REQUEST], ids=["checkvpw", "vauth", "authv"]
)
def test_read_login_data_takes_exactly_up_to_each_programs_limit(limit):
    r = _pipe_with(b"x" * limit)
    try:
        assert read_login_data(r, limit) == b"x" * limit
    finally:
        os.close(r)
    r = _pipe_with(b"x" * (limit + 1))
    try:
        with pytest.raises(LoginFailure) as failure:
            read_login_data(r, limit)
        assert (failure.value.code, failure.value.message) == (2, core.MSG_TOO_LONG)
    finally:
        os.close(r)


def test_read_login_data_closes_the_fd_only_when_asked_also_on_failure(tmp_path):
    r = _pipe_with(b"me\0pw\0")
    assert read_login_data(r, 512, close=True) == b"me\0pw\0"
    assert not _is_open(r)
    r = _pipe_with(b"x" * 600)
    with pytest.raises(LoginFailure):
        read_login_data(r, 512, close=True)
    assert not _is_open(r)
    unreadable = os.open(tmp_path, os.O_RDONLY)  # read() on a directory fails: EISDIR
    with pytest.raises(LoginFailure) as failure:
        read_login_data(unreadable, 512, close=True)
    assert (failure.value.code, failure.value.message) == (2, core.MSG_READ_ERROR)
    assert not _is_open(unreadable)
    r = _pipe_with(b"data")
    try:
        assert read_login_data(r, 512) == b"data"
        assert _is_open(r)
    finally:
        os.close(r)


def test_vuser_environment():
    user = VirtualUser(
        "bob",
        "$1$x",
        "./users/bob",
        personal="Bob Builder",
        message_size_limit=50000,
        message_count_limit=200,
        created=1795546316,
        expires=4102444800,
        mailbox_enabled=False,
    )
    assert vuser_environment(user) == {
        "VUSER_CTIME": "1795546316",
        "VUSER_EXPIRY": "4102444800",
        "VUSER_MSGCOUNT": "200",
        "VUSER_MSGSIZE": "50000",
        "VUSER_PERSONAL": "Bob Builder",
        "VUSER_HARDQUOTA": "-",
        "VUSER_SOFTQUOTA": "-",
        "VUSER_HAS_MAILBOX": "1",
        "VUSER_MAILBOX_ENABLED": "0",
    }


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),  # coerced by Python: removed
        ({"LC_CTYPE": "C"}, None),  # coerced from C: removed (unset means the same)
        ({"LC_CTYPE": "C.UTF-8"}, "C.UTF-8"),  # the caller's own value: kept
        ({"LANG": "C.UTF-8"}, None),  # no coercion happened, nothing to remove
    ],
)
def test_undo_locale_coercion(env, expected):
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); import os; from vmreconcile.runtime.login.core import "
        "undo_locale_coercion as u; u(os.environ); print(os.environ.get('LC_CTYPE'))"
    )
    done = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", "-c", code],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == str(expected)


def test_runtime_imports_only_stdlib_and_allowed_layers():
    """login core/checkvpw/vauthenticate import nothing outside the runtime's allowed layers."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); import vmreconcile.runtime.login.checkvpw, vmreconcile.runtime.login.vauthenticate;"
        "import json; print(json.dumps(sorted(m for m in sys.modules if m.startswith('vmreconcile'))))"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    modules = json.loads(done.stdout)
    allowed = (
        "vmreconcile.runtime",
        "vmreconcile.formats",
        "vmreconcile.model",
        "vmreconcile.host",
        "vmreconcile.tables",
    )
    assert all(m == "vmreconcile" or m.startswith(allowed) for m in modules), modules
