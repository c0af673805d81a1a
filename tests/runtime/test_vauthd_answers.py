"""vauthd without Dovecot: the protocol's bytes, what each fixture login is answered, table handling.

Lookups run in-process against a rooted fixture host (``build_step_root``: base user
``vbase1``, uid 1008, home inside the root), so no system account and no root are needed.
Hashes are cross-checked with Dovecot's own ``doveadm pw -t`` where Dovecot is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FIXTURE_PASSWORDS, build_step_root
from hypothesis import given, settings
from hypothesis import strategies as st
from test_authpipe_support import STEP, world_dir

from vmreconcile.formats.cdb import build_cdb
from vmreconcile.formats.hashing import hash_password
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.host import Host
from vmreconcile.model import VirtualUser
from vmreconcile.runtime.dovecot import answers as answers_module
from vmreconcile.runtime.dovecot.answers import (
    Answers,
    dovecot_password,
    maildir_path,
    parse_key,
    quota_fields,
)
from vmreconcile.runtime.dovecot.protocol import (
    Hello,
    Iterate,
    Lookup,
    Malformed,
    escape,
    failed,
    found,
    iteration_row,
    parse_request,
    unescape,
)
from vmreconcile.runtime.dovecot.tablecache import MAX_STALE_SECONDS, CopiedTables

DOMAIN = "mydomain.org"

# ------------------------------------------------------------------------------ protocol


@given(st.binary(max_size=200))
def test_escape_round_trips_and_leaves_no_framing_bytes(raw):
    escaped = escape(raw)
    assert unescape(escaped) == raw
    assert not any(byte in escaped for byte in b"\t\n\r\0")


def test_escapes_as_dovecot_sends_them():
    assert unescape(b"a\x01tb\x01nc\x011d\x01re\x010") == b"a\tb\nc\x01d\re\0"
    assert escape(b"a\tb\nc\x01") == b"a\x01tb\x01nc\x011"
    for bad in (b"x\x01", b"x\x01q", b"\x01\x01"):
        with pytest.raises(Malformed):
            unescape(bad)


def test_parse_request_reads_the_three_commands():
    hello = parse_request(b"H3\t2\t0\t\tvmr")
    assert isinstance(hello, Hello) and hello.major == b"3" and hello.dict_name == "vmr"
    lookup = parse_request(b"Lshared/passdb/a\x01tb@c\ta@c")
    assert isinstance(lookup, Lookup) and lookup.key == "shared/passdb/a\tb@c" and lookup.username == "a@c"
    assert parse_request(b"Lshared/userdb/x").username == ""
    iterate = parse_request(b"I0\t0\tshared/userdb/\t*")
    assert isinstance(iterate, Iterate) and (iterate.flags, iterate.max_rows, iterate.path) == (0, 0, "shared/userdb/")


@pytest.mark.parametrize(
    "line", [b"", b"X", b"Bfoo", b"H", b"Ix\t0\tshared/userdb/", b"I0\t-1\tp", b"I0\t0", b"Lbad\x01escape"]
)
def test_parse_request_refuses_what_it_does_not_understand(line):
    with pytest.raises(Malformed):
        parse_request(line)


def test_replies_are_framed():
    assert found(b'{"a":"b\tc"}') == b'O{"a":"b\x01tc"}\n'
    assert failed("bad\nthing") == b"Fbad\x01nthing\n"
    assert iteration_row("shared/userdb/me@x") == b"Oshared/userdb/me@x\t\n"


# ------------------------------------------------------------------------------ pure rules


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("shared/passdb/me@mydomain.org", ("passdb", "me@mydomain.org", "")),
        ("shared/userdb/me", ("userdb", "me", "")),
        ("shared/passdb/me/192.0.2.10", ("passdb", "me", "192.0.2.10")),
        ("shared/passdb/me/", ("passdb", "me", "")),
        ("shared/passdb/", None),
        ("shared/passdb", None),
        ("shared/other/me", None),
        ("priv/passdb/me", None),
        ("shared/userdb/me/a/b", None),
    ],
)
def test_parse_key(key, parsed):
    assert parse_key(key) == parsed


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("$1$abcdefgh$IvHnD.uhYhhpxAiK9IT/C/", "{CRYPT}$1$abcdefgh$IvHnD.uhYhhpxAiK9IT/C/"),
        ("$y$j9T$salt$hash", "{CRYPT}$y$j9T$salt$hash"),
        ("$7$CU..../....$x", "{CRYPT}$7$CU..../....$x"),
        ("abNANd1rDfiNc", "{CRYPT}abNANd1rDfiNc"),
        ("$0$dave-plain", "{PLAIN}dave-plain"),
        ("$0$", None),
        ("3" + "5ebe2294ecd0e0f08eab7690d2a6ee69", "{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69"),
        ("3" + "5EBE2294ECD0E0F08EAB7690D2A6EE69", None),
        ("*", None),
        ("!$6$x$y", None),
        ("", None),
        ("hello", None),
        ("$1$a\n$b", None),
    ],
)
def test_dovecot_password(stored, expected):
    assert dovecot_password(stored) == expected


DOVEADM = shutil.which("doveadm")


@pytest.mark.skipif(DOVEADM is None, reason="needs Debian's dovecot-core (doveadm pw)")
@pytest.mark.parametrize(
    ("scheme", "plain"),
    [
        ("md5-crypt", "pw one"),
        ("sha512-crypt", "pw two"),
        ("yescrypt", "pw three"),
        ("bcrypt", "pw four"),
        ("null-crypt", "null crypt:pw"),
        ("old-md5", "old md5"),
    ],
)
def test_dovecot_verifies_what_vauthd_sends_exactly_as_checkvpw_would(scheme, plain):
    """The stored hash, as vauthd sends it, checked by Dovecot's own code (doveadm pw -t)."""
    import hashlib

    from vmreconcile.runtime.login.core import verify

    if scheme == "null-crypt":
        stored = "$0$" + plain
    elif scheme == "old-md5":
        stored = "3" + hashlib.md5(plain.encode()).hexdigest()
    else:
        stored = hash_password(plain, scheme)
    sent = dovecot_password(stored)
    for attempt in (plain, plain + "x"):
        done = subprocess.run([DOVEADM, "pw", "-t", sent, "-p", attempt], capture_output=True, text=True)
        assert ("(verified)" in done.stdout) == verify(attempt, stored) == (attempt == plain), done


@pytest.mark.parametrize(
    ("directory", "expected"),
    [
        ("./users/me", "/h/b/users/me"),
        ("users/Henry:Ford", "/h/b/users/Henry:Ford"),
        ("./users/a/../b", "/h/b/users/b"),
        ("../other/users/me", None),
        ("./users/../..", None),
        (".", None),
        ("/var/mail/me", None),
        ("", None),
    ],
)
def test_maildir_path_stays_in_the_home(directory, expected):
    assert maildir_path("/h/b", directory) == expected


def user(**fields) -> VirtualUser:
    return VirtualUser(name="u", password="*", directory="./users/u", **fields)


def test_quota_fields():
    assert quota_fields(user()) == {}
    assert quota_fields(user(hard_quota=1000000)) == {"quota_rule": "*:storage=1000000B"}
    assert quota_fields(user(message_count_limit=200, hard_quota=5)) == {
        "quota_rule": "*:storage=5B",
        "quota_rule2": "*:messages=200",
    }
    # VMailMgr's 0 lets nothing in (vdeliver); Dovecot would read 0 as "unlimited"
    assert quota_fields(user(hard_quota=0)) == {"quota_rule": "*:storage=1B"}
    assert quota_fields(user(message_count_limit=0)) == {"quota_rule": "*:storage=1B"}
    assert quota_fields(user(message_size_limit=10, soft_quota=5)) == {}


# ------------------------------------------------------------------------------ lookups


@pytest.fixture
def root() -> Iterator[Path]:
    with world_dir("vmr-vauthd-") as top:
        build_step_root(STEP, top / "root")
        yield top / "root"


@pytest.fixture
def answers(root) -> Answers:
    logged: list[str] = []
    made = Answers(CopiedTables(Host(root)), logged.append)
    made.logged = logged  # type: ignore[attr-defined]
    return made


def ask(answers: Answers, key: str) -> dict | None:
    reply = answers.lookup(key)
    if reply == b"N\n":
        return None
    assert reply.startswith(b"O") and reply.endswith(b"\n"), reply
    return json.loads(unescape(reply[1:-1]))


def test_passdb_and_userdb_of_a_virtual_user(answers, root):
    passdb = ask(answers, "shared/passdb/alice@mydomain.org")
    home = str(root / "home" / "vbase1" / "users" / "alice")
    assert passdb["password"].startswith("{CRYPT}$1$")
    assert (passdb["userdb_uid"], passdb["userdb_gid"], passdb["userdb_home"]) == (1008, 1008, home)
    userdb = ask(answers, "shared/userdb/alice@mydomain.org")
    assert userdb == {name.removeprefix("userdb_"): value for name, value in passdb.items() if name != "password"}
    assert userdb["mail"] == "maildir:~" and userdb["quota_rule"] == "*:storage=1000000B"
    assert (userdb["vuser"], userdb["vuser_personal"], userdb["vuser_softquota"]) == (
        "alice",
        "Alice Example",
        "800000",
    )


@pytest.mark.parametrize(
    "login",
    [
        "me@mydomain.org",
        "me:mydomain.org",
        "ME@MyDomain.ORG",
        "me@mail.mydomain.org",  # .mydomain.org wildcard
        "vbase1-me",  # no separator: host name, not a virtual domain here
        "vbase1-me@localhost",  # locals: the base-user form
    ],
)
def test_every_login_form_of_checkvpw(answers, root, login):
    assert ask(answers, f"shared/userdb/{login}")["home"] == str(root / "home" / "vbase1" / "users" / "me")


def test_local_address_stands_in_for_tcplocalhost(answers, root):
    (root / "var" / "qmail" / "control" / "virtualdomains").write_text(
        "mydomain.org:vbase1\n.mydomain.org:vbase1\n192.0.2.10:vbase1\n"
    )
    assert ask(answers, "shared/passdb/me/192.0.2.10") is not None
    assert ask(answers, "shared/passdb/me/192.0.2.11") is None  # that address names no domain
    assert ask(answers, "shared/passdb/me@mydomain.org/192.0.2.11") is not None  # a domain wins


@pytest.mark.parametrize(
    "login",
    [
        "nosuchuser@mydomain.org",
        "info@mydomain.org",  # alias, no mailbox
        "sales@mydomain.org",  # alias with forwards
        "me@unknown.example",  # no such system account "me"
        "vbase1@localhost",  # system account: off by default
        "@mydomain.org",
        "me@",
        "root-x@localhost",  # uid 0 is never a base user
    ],
)
def test_not_found(answers, login):
    assert answers.lookup(f"shared/passdb/{login}") == b"N\n"
    assert answers.lookup(f"shared/userdb/{login}") == b"N\n"


def test_no_password_login_but_a_mailbox(answers):
    """nopass (``*``): no login, but userdb knows the mailbox (delivery, doveadm)."""
    assert ask(answers, "shared/passdb/nopass@mydomain.org") is None
    assert ask(answers, "shared/userdb/nopass@mydomain.org")["vuser"] == "nopass"
    assert answers.logged == []  # "*" means no login on purpose: nothing to log


def test_expired_user_refused_after_the_password_and_without_userdb(answers):
    assert ask(answers, "shared/passdb/dave@mydomain.org") == {
        "password": "{PLAIN}dave-plain",
        "nologin": "y",
        "reason": "Account has expired",
    }
    assert ask(answers, "shared/userdb/dave@mydomain.org") is None


def test_disabled_mailbox_still_logs_in_as_with_checkvpw(answers):
    assert ask(answers, "shared/passdb/frank@mydomain.org")["userdb_vuser_mailbox_enabled"] == "0"


def test_system_account_when_enabled(answers, root):
    (root / "etc" / "vmailmgr" / "vmreconcile-system-logins").write_text("yes\n")
    shadow = hash_password("base-pass-1", "sha512-crypt")
    (root / "etc" / "shadow").write_text(f"vbase1:{shadow}:20000:0:99999:7:::\n")
    passdb = ask(answers, "shared/passdb/vbase1@localhost")
    assert passdb["password"] == "{CRYPT}" + shadow
    assert passdb["userdb_home"] == str(root / "home" / "vbase1")
    assert passdb["userdb_mail"] == "maildir:~/Maildir"
    (root / "etc" / "shadow").write_text("vbase1:!:20000:0:99999:7:::\n")  # locked
    assert ask(answers, "shared/passdb/vbase1@localhost") is None
    assert ask(answers, "shared/userdb/vbase1@localhost")["uid"] == 1008


def write_table(home: Path, users: list[VirtualUser]) -> None:
    """Replace the table the way apply and VMailMgr do: a new file renamed over the old one."""
    tmp = home / "passwd.cdb.new"
    tmp.write_bytes(build_cdb([(user_key(u.name), encode_record(u)) for u in users]))
    os.replace(tmp, home / "passwd.cdb")


def within_the_reread_interval(check):
    """``check()`` once it is true, polled: a changed table is re-read at most so often, and is
    seen at most MAX_STALE_SECONDS late (tablecache); the last falsy value if it never is."""
    deadline = time.monotonic() + MAX_STALE_SECONDS + 0.5
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.002)


def test_a_replaced_table_counts_within_the_reread_interval(answers, root):
    home = root / "home" / "vbase1"
    assert ask(answers, "shared/passdb/zed@mydomain.org") is None
    new = hash_password("zed-pw", "md5-crypt")
    write_table(home, [VirtualUser(name="zed", password=new, directory="./users/zed")])
    found = within_the_reread_interval(lambda: ask(answers, "shared/passdb/zed@mydomain.org"))
    assert found["password"] == "{CRYPT}" + new
    assert ask(answers, "shared/passdb/me@mydomain.org") is None


def test_a_table_changed_in_place_is_reread_and_truncation_cannot_crash(answers, root):
    table = root / "home" / "vbase1" / "passwd.cdb"
    assert ask(answers, "shared/passdb/me@mydomain.org") is not None
    with open(table, "r+b") as fp:  # same inode, as a hostile base user could do
        fp.truncate(100)
    reply = within_the_reread_interval(
        lambda: (r := answers.lookup("shared/passdb/me@mydomain.org")).startswith(b"F") and r
    )
    assert reply and reply.startswith(b"F"), reply
    assert any("Cannot read the virtual password table" in line for line in answers.logged)


@pytest.mark.parametrize("damage", ["garbage", "empty", "symlink", "directory", "fifo"])
def test_an_unusable_table_fails_that_lookup_only(answers, root, damage):
    home = root / "home" / "vbase1"
    table = home / "passwd.cdb"
    table.unlink()
    if damage == "garbage":
        table.write_bytes(os.urandom(3000))
    elif damage == "empty":
        table.write_bytes(b"")
    elif damage == "symlink":
        table.symlink_to(root / "etc" / "passwd")
    elif damage == "directory":
        table.mkdir()
    else:
        os.mkfifo(table)
    started = time.monotonic()
    reply = answers.lookup("shared/passdb/me@mydomain.org")
    assert time.monotonic() - started < 2
    assert reply.startswith(b"F") and b"password table" in reply, reply
    assert b"/" not in reply  # no paths towards Dovecot
    shutil.rmtree(table) if damage == "directory" else table.unlink()
    write_table(home, [VirtualUser(name="me", password="$0$x", directory="./users/me")])
    assert within_the_reread_interval(lambda: answers.lookup("shared/passdb/me@mydomain.org").startswith(b"O"))
    assert ask(answers, "shared/passdb/me@mydomain.org")["password"] == "{PLAIN}x"


def test_no_table_yet_is_not_found(answers, root):
    (root / "home" / "vbase1" / "passwd.cdb").unlink()
    assert answers.lookup("shared/passdb/me@mydomain.org") == b"N\n"


def test_a_corrupt_record_or_a_maildir_outside_the_home_is_not_found_and_logged(answers, root):
    home = root / "home" / "vbase1"
    good = encode_record(VirtualUser(name="ok", password="$0$x", directory="./users/ok"))
    escaping = encode_record(VirtualUser(name="esc", password="$0$x", directory="../../etc"))
    tmp = home / "passwd.cdb.new"
    tmp.write_bytes(build_cdb([(b"ok", good), (b"bad", b"\x02garbage"), (b"esc", escaping)]))
    os.replace(tmp, home / "passwd.cdb")
    assert ask(answers, "shared/passdb/ok@mydomain.org") is not None
    assert answers.lookup("shared/passdb/bad@mydomain.org") == b"N\n"
    assert answers.lookup("shared/userdb/esc@mydomain.org") == b"N\n"
    assert any("corrupt record" in line for line in answers.logged)
    assert any("outside the base user's home" in line for line in answers.logged)
    assert not any("$0$" in line or "{PLAIN}" in line for line in answers.logged)  # never a password


def test_a_password_no_scheme_can_check_is_refused_with_a_log_line(answers, root):
    write_table(root / "home" / "vbase1", [VirtualUser(name="odd", password="not-a-hash", directory="./users/odd")])
    assert answers.lookup("shared/passdb/odd@mydomain.org") == b"N\n"
    assert any("not a hash Dovecot can check" in line for line in answers.logged)
    assert not any("not-a-hash" in line for line in answers.logged)


def test_unknown_keys_are_not_found(answers):
    for key in ("shared/quota/me@mydomain.org", "priv/passdb/x", "shared/passdb/", "shared/userdb/me/a/b"):
        assert answers.lookup(key) == b"N\n"


def test_an_internal_error_costs_one_lookup(answers, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(answers_module, "userdb_fields", boom)
    assert answers.lookup("shared/userdb/me@mydomain.org") == b"Finternal error\n"
    monkeypatch.undo()
    assert ask(answers, "shared/userdb/me@mydomain.org") is not None


# ------------------------------------------------------------------------------ iteration


def listed(answers: Answers, path: str = "shared/userdb/", max_rows: int = 0) -> list[bytes]:
    return list(answers.iterate(Iterate(0, max_rows, path, "*")))


def test_iteration_lists_each_mailbox_once_then_ends(answers, root):
    (root / "var" / "qmail" / "control" / "virtualdomains").write_text(
        "mydomain.org:vbase1\n.mydomain.org:vbase1\nmydomain.com:vbase1\n"
    )
    rows = listed(answers)
    assert rows[-1] == b"\n"
    names = [row[len(b"Oshared/userdb/") : -2].decode() for row in rows[:-1]]
    assert all(row.endswith(b"\t\n") for row in rows[:-1])
    assert "me@mydomain.org" in names and "henry.ford@mydomain.org" in names and "nopass@mydomain.org" in names
    assert not [n for n in names if n.split("@")[0] in ("info", "sales", "support.team", "+", "dave")]
    assert not [n for n in names if n.endswith("@mydomain.com")]  # the alias domain does not list them twice
    assert len(names) == len(set(names))
    for name in names:  # every listed user is one userdb finds
        assert ask(answers, f"shared/userdb/{name}") is not None


@pytest.mark.parametrize(
    ("virtualdomains", "expected"),
    [
        ("a.example:vbase1\nb.example:vbase1-sub\n", ["sub-x@a.example", "y@a.example"]),
        ("b.example:vbase1-sub\na.example:vbase1\n", ["x@b.example", "y@a.example"]),
        ("b.example:vbase1-sub\nc.example:vbase1-sub\n", ["x@b.example"]),
    ],
)
def test_iteration_lists_a_user_under_the_first_domain_that_reaches_it(answers, root, virtualdomains, expected):
    (root / "var" / "qmail" / "control" / "virtualdomains").write_text(virtualdomains)
    write_table(
        root / "home" / "vbase1",
        [VirtualUser(name=n, password="$0$p", directory=f"./users/{n}") for n in ("sub-x", "y")],
    )
    rows = listed(answers)
    assert [row[len(b"Oshared/userdb/") : -2].decode() for row in rows[:-1]] == expected


def test_iteration_row_limit_and_other_paths(answers):
    assert len(listed(answers, max_rows=2)) == 3
    assert listed(answers, "shared/passdb/") == [b"Fvauthd lists users only under shared/userdb/\n"]


def test_table_copies_stay_within_the_budget(root):
    host = Host(root)
    (root / "etc" / "passwd").write_text(
        "".join(f"b{n}:x:{2000 + n}:{2000 + n}::/home/b{n}:/bin/sh\n" for n in range(6))
    )
    (root / "var" / "qmail" / "control" / "virtualdomains").write_text(
        "".join(f"d{n}.example:b{n}\n" for n in range(6))
    )
    size = 0
    for n in range(6):
        home = root / "home" / f"b{n}"
        home.mkdir()
        write_table(home, [VirtualUser(name="u", password="$0$p", directory="./users/u")])
        size = (home / "passwd.cdb").stat().st_size
    tables = CopiedTables(host, max_table_bytes=size, budget=3 * size, max_tables=10)
    answers = Answers(tables, lambda line: None)
    for n in range(6):
        assert ask(answers, f"shared/passdb/u@d{n}.example") is not None
        assert tables.held_bytes <= 3 * size
    small = CopiedTables(host, max_table_bytes=size - 1)
    assert Answers(small, lambda line: None).lookup("shared/passdb/u@d0.example").startswith(b"F")


@pytest.fixture(scope="module")
def shared_answers() -> Iterator[Answers]:
    with world_dir("vmr-vauthd-shared-") as top:
        build_step_root(STEP, top / "root")
        yield Answers(CopiedTables(Host(top / "root")), lambda line: None)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | st.builds("shared/{}/{}".format, st.sampled_from(["passdb", "userdb"]), st.text()))
def test_any_key_gets_one_reply_line_dovecot_can_parse(shared_answers, key):
    reply = shared_answers.lookup(key)
    assert reply[:1] in (b"O", b"N", b"F") and reply.endswith(b"\n") and reply.count(b"\n") == 1
    if reply.startswith(b"O"):
        assert isinstance(json.loads(unescape(reply[1:-1])), dict)


def test_fixture_passwords_verify_through_what_vauthd_sends(answers):
    """Every fixture user that can log in: its password checks against the sent scheme."""
    from vmreconcile.formats.hashing import verify_password

    for name, plain in FIXTURE_PASSWORDS.items():
        passdb = ask(answers, f"shared/passdb/{name}@{DOMAIN}")
        if name in ("grace",):  # deleted in step 09
            assert passdb is None
            continue
        scheme, _, body = passdb["password"][1:].partition("}")
        if scheme == "CRYPT":
            assert verify_password(plain, body), name
        else:
            assert (scheme, body) == ("PLAIN", plain), name


def test_a_system_account_hash_too_costly_to_check_is_not_served(answers, root):
    (root / "etc" / "vmailmgr" / "vmreconcile-system-logins").write_text("yes\n")
    (root / "etc" / "shadow").write_text("vbase1:$5$rounds=900000000$abcdefgh$" + "a" * 43 + ":20000:0:99999:7:::\n")
    assert answers.lookup("shared/passdb/vbase1@localhost") == b"N\n"
    assert any(
        "not found: Password hash too costly to check: sha-crypt rounds=900000000" in line for line in answers.logged
    )
    assert ask(answers, "shared/userdb/vbase1@localhost")["uid"] == 1008
